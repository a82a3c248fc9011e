-- acd_floor.lua: appended to acd.lua by acd_floor_bench (never loaded by
-- acd). Its functions time, inside Redis (no network, no acd), one
-- database each:
--   floor_acd:      acd's library on the bench's shape (tools/bench acd):
--                   batches of 16 enqueues, each offered at once to a ready
--                   agent, and the 16 calls of the batch before ended;
--   floor_commands: the very commands those decisions issue (same keys,
--                   fields and replies), with none of acd's rules: what the
--                   layout of the live state costs by itself;
--   floor_lean:     the same decisions in a leaner layout (packed records,
--                   a ready set per group of agents), no rules;
--   floor_bound:    the body of the bound's script (acd_bench's
--                   redis-benchmark EVALSHA), run in a loop.
-- Each returns the microseconds its run took (Redis's TIME).

local F = { n = 0, t = 1700000000000, batch = 0, prev = {}, bare_n = 0, bare_prev = {}, lean_n = 0, lean_prev = {} }

local function us_since(t0)
  local t1 = rcall('TIME')
  return (t1[1] - t0[1]) * 1000000 + (t1[2] - t0[2])
end

-- Runs ops (lists of strings: request id, operation, time, args) as one
-- batch, as acd_router sends it.
local function floor_batch(ops)
  F.batch = F.batch + 1
  local argv = { tostring(#ops), 'floor.' .. F.batch }
  for _, op in ipairs(ops) do
    argv[#argv + 1] = tostring(#op)
    for i = 1, #op do argv[#argv + 1] = op[i] end
  end
  return run_batch(argv)
end

-- The bench's queues and agents: 100 queues over 5 skills; 1,000 agents,
-- each in 3 queues, with every skill at levels 1..5.
redis.register_function('floor_setup', function()
  bind_standard()
  local ops, t = {}, tostring(F.t)
  for q = 0, 99 do
    ops[#ops + 1] = { '', 'queue', t, string.format('q%03d', q), 'longest_idle', '300000', '0', '', '0', '0',
                      's' .. (q % 5) .. ':1', '', '0', '0', 'leave', '1', '0', 'reject', '3', '300000', '14400000',
                      '1', '20000', '', '', '0', '1', '0' }
  end
  floor_batch(ops)
  for a = 0, 999 do
    local id, qs, sk = string.format('ag%04d', a), {}, {}
    for k = 0, 2 do qs[#qs + 1] = string.format('q%03d', (a + k * 37) % 100) end
    for k = 0, 4 do sk[#sk + 1] = 's' .. k .. ':' .. (1 + (a + k) % 5) end
    floor_batch({ { '', 'login', t, id, id, table.concat(qs, ','), table.concat(sk, ',') } })
  end
  return 'ok'
end)

-- floor_acd batches: 16 decisions per batch, as the bench's (a request id
-- per enqueue, none per hang-up).
redis.register_function('floor_acd', function(_, args)
  bind_standard()
  local t0 = rcall('TIME')
  for _ = 1, tonumber(args[1]) or 20 do
    F.t = F.t + 1
    local t, ops, cur = tostring(F.t), {}, {}
    for i = 1, 16 do
      local call = 'b' .. F.n
      ops[i] = { call, 'enqueue', t, call, string.format('q%03d', F.n % 100), '0', '', '', '', '', '' }
      cur[i], F.n = call, F.n + 1
    end
    for _, call in ipairs(F.prev) do ops[#ops + 1] = { '', 'ended', t, call } end
    F.prev = cur
    floor_batch(ops)
  end
  return us_since(t0)
end)

-- The agent's fields acd reads on each decision.
local AGENT_FIELDS = { 'state', 'since', 'reason', 'call', 'ext', 'queues', 'calls', 'last_offer', 'after_call',
                       'ranks', 'skills' }

-- floor_commands batches: each enqueue's and hang-up's commands, in acd's
-- order, with the batch's own (GET conf:gen, HGET of a batch sent again,
-- GET/SET seq, the request ids' HSET, EXPIRE, UNLINK).
redis.register_function('floor_commands', function(_, args)
  bind_standard()
  local t0 = rcall('TIME')
  for _ = 1, tonumber(args[1]) or 20 do
    F.t = F.t + 1
    local t, cur, store = tostring(F.t), {}, {}
    rcall('GET', 'acd:conf:gen')
    rcall('HGET', 'acd:req:floor', '#floor')
    rcall('GET', 'acd:seq')
    for i = 1, 16 do
      local call, q = 'c' .. F.bare_n, string.format('q%03d', F.bare_n % 100)
      cur[i], F.bare_n = call, F.bare_n + 1
      rcall('EXISTS', 'acd:call:' .. call, 'acd:call:' .. call, 'acd:queue:' .. q .. ':wait')
      local agent = rcall('ZRANGE', 'acd:queue:' .. q .. ':ready', '0', '0')[1]
      local a = rcall('HMGET', 'acd:agent:' .. agent, unpack(AGENT_FIELDS))
      for aq in string.gmatch(a[6], '[^,]+') do rcall('ZREM', 'acd:queue:' .. aq .. ':ready', agent) end
      rcall('HSET', 'acd:agent:' .. agent, 'state', 'reserved', 'since', t, 'reason', '', 'call', call,
            'last_offer', t)
      rcall('HSET', 'acd:call:' .. call, 'queue', q, 'prio', '0', 'enq', t, 'rank', '9' .. t, 'state', 'offered',
            'skills', 's1:1', 'agent', agent, 'offered', t)
      rcall('ZADD', 'acd:offers', t, call)
      store[#store + 1], store[#store + 2] = call, 'floor ' .. i
    end
    for _, call in ipairs(F.bare_prev) do
      local c = rcall('HMGET', 'acd:call:' .. call, 'queue', 'state', 'agent', 'enq', 'kind', 'answered')
      local agent = c[3]
      local a = rcall('HMGET', 'acd:agent:' .. agent, unpack(AGENT_FIELDS))
      rcall('HSET', 'acd:agent:' .. agent, 'state', 'ready', 'since', t, 'reason', '', 'call', '')
      local waits = {}
      for aq in string.gmatch(a[6], '[^,]+') do
        rcall('ZADD', 'acd:queue:' .. aq .. ':ready', t, agent)
        waits[#waits + 1] = 'acd:queue:' .. aq .. ':wait'
      end
      rcall('DEL', 'acd:call:' .. call)
      rcall('ZREM', 'acd:offers', call)
      rcall('EXISTS', unpack(waits))
    end
    F.bare_prev = cur
    rcall('SET', 'acd:seq', t)
    store[#store + 1], store[#store + 2] = '#floor', '[]'
    rcall('HSET', 'acd:req:floor', unpack(store))
    rcall('EXPIRE', 'acd:req:floor', 40)
    rcall('UNLINK', 'acd:req:none')
  end
  return us_since(t0)
end)

-- floor_lean batches: the same decisions in the leanest layout of live
-- state we could conceive (not acd's): an agent and a call each one string
-- (GET and SET instead of HMGET and HSET), and one ready set per group of
-- agents with the same queues (an agent is in one set; a queue reads the
-- heads of its groups' sets, 3 here). Still with the batch's request-id
-- store, without which a retry would act twice. No rules: what such a
-- layout's commands would cost by themselves.
local LEAN = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31'
redis.register_function('floor_lean_setup', function()
  bind_standard()
  for a = 0, 999 do
    local id = string.format('ag%04d', a)
    rcall('SET', 'lean:agent:' .. id, table.concat({ 'ready', '1700000000000', '', '', id, 'g' .. (a % 100), '0', '0',
                                                     '', 'longest_idle s1:1', 's0:1,s1:2,s2:3,s3:4,s4:5' }, '\31'))
    rcall('ZADD', 'lean:group:g' .. (a % 100), a, id)
  end
  return 'ok'
end)
redis.register_function('floor_lean', function(_, args)
  bind_standard()
  local t0 = rcall('TIME')
  for _ = 1, tonumber(args[1]) or 20 do
    F.t = F.t + 1
    local t, cur, store = tostring(F.t), {}, {}
    rcall('GET', 'acd:conf:gen')
    rcall('HGET', 'lean:req', '#floor')
    rcall('GET', 'acd:seq')
    for i = 1, 16 do
      local call, q = 'l' .. F.lean_n, F.lean_n % 100
      cur[i], F.lean_n = call, F.lean_n + 1
      rcall('EXISTS', 'lean:call:' .. call, 'lean:wait:' .. q)
      -- Agent a's group is a % 100; queue q's agents are in groups q, q - 37, q - 74.
      local best, best_score, best_group = nil, nil, nil
      for k = 0, 2 do
        local group = 'lean:group:g' .. ((q - k * 37) % 100)
        local head = rcall('ZRANGE', group, '0', '0', 'WITHSCORES')
        if head[1] and (not best_score or tonumber(head[2]) < best_score) then
          best, best_score, best_group = head[1], tonumber(head[2]), group
        end
      end
      local _, _, _, _, ext, group = string.match(rcall('GET', 'lean:agent:' .. best), LEAN)
      rcall('ZREM', best_group, best)
      rcall('SET', 'lean:agent:' .. best, table.concat({ 'reserved', t, '', call, ext, group, '0', t, '',
                                                         'longest_idle s1:1', 's0:1,s1:2,s2:3,s3:4,s4:5' }, '\31'))
      rcall('SET', 'lean:call:' .. call, table.concat({ 'q', 'offered', best, t, 'call', '', '0', '9' .. t, t, '', '',
                                                        '', 's1:1' }, '\31'))
      rcall('ZADD', 'acd:offers', t, call)
      store[#store + 1], store[#store + 2] = call, 'floor ' .. i
    end
    for _, call in ipairs(F.lean_prev) do
      local _, _, agent = string.match(rcall('GET', 'lean:call:' .. call), LEAN)
      local _, _, _, _, ext, group = string.match(rcall('GET', 'lean:agent:' .. agent), LEAN)
      rcall('SET', 'lean:agent:' .. agent, table.concat({ 'ready', t, '', '', ext, group, '0', t, '',
                                                          'longest_idle s1:1', 's0:1,s1:2,s2:3,s3:4,s4:5' }, '\31'))
      rcall('ZADD', 'lean:group:' .. group, t, agent)
      rcall('DEL', 'lean:call:' .. call)
      rcall('ZREM', 'acd:offers', call)
      rcall('EXISTS', 'lean:wait:1', 'lean:wait:2', 'lean:wait:3')
    end
    F.lean_prev = cur
    rcall('SET', 'acd:seq', t)
    store[#store + 1], store[#store + 2] = '#floor', '[]'
    rcall('HSET', 'lean:req', unpack(store))
    rcall('EXPIRE', 'lean:req', 40)
  end
  return us_since(t0)
end)

-- floor_bound n body: the bound's script (its text: acd_bound.c) n times,
-- on the keys acd_bound_seed wrote.
redis.register_function('floor_bound', function(_, args)
  bind_standard()
  local script = loadstring('return function(KEYS, ARGV) ' .. args[2] .. ' end')()
  local keys, argv = { 'bench:ready' }, { 'c1', '1' }
  local t0 = rcall('TIME')
  for _ = 1, tonumber(args[1]) or 1000 do script(keys, argv) end
  return us_since(t0)
end)
