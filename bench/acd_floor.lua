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

local F = { n = 0, t = 1700000000000, batch = 0, prev = {} }

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
  -- Each queue has 30 agents, all ready: else acd's operations changed
  -- and the figures would time something else.
  for q = 0, 99 do
    if rcall('ZCARD', string.format('acd:queue:q%03d:ready', q)) ~= 30 then
      return redis.error_reply('floor: queue ' .. q .. ' has not its 30 ready agents (acd operations changed?)')
    end
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
  local us = us_since(t0)
  -- Each enqueue was an offer, and each hang-up freed its agent.
  if rcall('ZCARD', 'acd:offers') ~= 16 then
    return redis.error_reply('floor: not every call was offered (acd operations changed?)')
  end
  return us
end)

-- Runs nb batches of the bench's shape through layout: 16 calls enqueued
-- (layout.enqueue(call, queue number, time)), the 16 of the batch before
-- ended (layout.hang_up(call, time)), with the batch's own commands as acd
-- issues them: GET conf:gen, HGET of a batch sent again, GET and SET of
-- the round-robin counter, the request ids' HSET, EXPIRE, UNLINK.
local function floor_steps(nb, layout)
  local t0 = rcall('TIME')
  for _ = 1, nb do
    F.t = F.t + 1
    local t, cur, store = tostring(F.t), {}, {}
    rcall('GET', 'acd:conf:gen')
    rcall('HGET', layout.req, '#floor')
    rcall('GET', 'acd:seq')
    for i = 1, 16 do
      local call = layout.prefix .. layout.n
      layout.enqueue(call, layout.n % 100, t)
      cur[i], layout.n = call, layout.n + 1
      store[#store + 1], store[#store + 2] = call, 'floor ' .. i
    end
    for _, call in ipairs(layout.prev) do layout.hang_up(call, t) end
    layout.prev = cur
    rcall('SET', 'acd:seq', t)
    store[#store + 1], store[#store + 2] = '#floor', '[]'
    rcall('HSET', layout.req, unpack(store))
    rcall('EXPIRE', layout.req, 40)
    rcall('UNLINK', layout.req .. ':none')
  end
  return us_since(t0)
end

-- acd's layout: the commands of each enqueue and hang-up, in acd's order.
local AGENT_FIELDS = { 'state', 'since', 'reason', 'call', 'ext', 'queues', 'calls', 'last_offer', 'after_call',
                       'ranks', 'skills' }
local COMMANDS = { prefix = 'c', req = 'acd:req:floor', n = 0, prev = {} }
function COMMANDS.enqueue(call, qn, t)
  local q = string.format('q%03d', qn)
  rcall('EXISTS', 'acd:call:' .. call, 'acd:call:' .. call, 'acd:queue:' .. q .. ':wait')
  local agent = rcall('ZRANGE', 'acd:queue:' .. q .. ':ready', '0', '0')[1]
  local a = rcall('HMGET', 'acd:agent:' .. agent, unpack(AGENT_FIELDS))
  for aq in string.gmatch(a[6], '[^,]+') do rcall('ZREM', 'acd:queue:' .. aq .. ':ready', agent) end
  rcall('HSET', 'acd:agent:' .. agent, 'state', 'reserved', 'since', t, 'reason', '', 'call', call, 'last_offer', t)
  rcall('HSET', 'acd:call:' .. call, 'queue', q, 'prio', '0', 'enq', t, 'rank', '9' .. t, 'state', 'offered',
        'skills', 's1:1', 'agent', agent, 'offered', t)
  rcall('ZADD', 'acd:offers', t, call)
end
function COMMANDS.hang_up(call, t)
  local agent = rcall('HMGET', 'acd:call:' .. call, 'queue', 'state', 'agent', 'enq', 'kind', 'answered')[3]
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
redis.register_function('floor_commands', function(_, args)
  bind_standard()
  return floor_steps(tonumber(args[1]) or 20, COMMANDS)
end)

-- The leanest layout of live state we could conceive (not acd's): an agent
-- and a call each one string (GET and SET instead of HMGET and HSET), and
-- one ready set per group of agents with the same queues (an agent is in
-- one set; a queue reads the heads of its groups' sets, 3 here: agent a is
-- in group a % 100, queue q's agents in groups q, q - 37 and q - 74).
-- Still with the batch's request-id store, without which a retry would act
-- twice. No rules: what such a layout's commands cost by themselves.
local LEAN = { prefix = 'l', req = 'lean:req', n = 0, prev = {} }
local LEAN_FIELDS = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31'
local function lean_agent(state, t, call, ext, group)
  return table.concat({ state, t, '', call, ext, group, '0', t, '', 'longest_idle s1:1', 's0:1,s1:2,s2:3,s3:4,s4:5' },
                      '\31')
end
function LEAN.enqueue(call, q, t)
  rcall('EXISTS', 'lean:call:' .. call, 'lean:wait:' .. q)
  local best, best_score, best_group = nil, nil, nil
  for k = 0, 2 do
    local group = 'lean:group:g' .. ((q - k * 37) % 100)
    local head = rcall('ZRANGE', group, '0', '0', 'WITHSCORES')
    if head[1] and (not best_score or tonumber(head[2]) < best_score) then
      best, best_score, best_group = head[1], tonumber(head[2]), group
    end
  end
  local _, _, _, _, ext, group = string.match(rcall('GET', 'lean:agent:' .. best), LEAN_FIELDS)
  rcall('ZREM', best_group, best)
  rcall('SET', 'lean:agent:' .. best, lean_agent('reserved', t, call, ext, group))
  rcall('SET', 'lean:call:' .. call, table.concat({ 'q', 'offered', best, t, 'call', '', '0', '9' .. t, t, '', '', '',
                                                    's1:1' }, '\31'))
  rcall('ZADD', 'acd:offers', t, call)
end
function LEAN.hang_up(call, t)
  local _, _, agent = string.match(rcall('GET', 'lean:call:' .. call), LEAN_FIELDS)
  local _, _, _, _, ext, group = string.match(rcall('GET', 'lean:agent:' .. agent), LEAN_FIELDS)
  rcall('SET', 'lean:agent:' .. agent, lean_agent('ready', t, '', ext, group))
  rcall('ZADD', 'lean:group:' .. group, t, agent)
  rcall('DEL', 'lean:call:' .. call)
  rcall('ZREM', 'acd:offers', call)
  rcall('EXISTS', 'lean:wait:1', 'lean:wait:2', 'lean:wait:3')   -- its queues' wait sets (none waits here)
end
redis.register_function('floor_lean_setup', function()
  bind_standard()
  for a = 0, 999 do
    local id = string.format('ag%04d', a)
    rcall('SET', 'lean:agent:' .. id, lean_agent('ready', '1700000000000', '', id, 'g' .. (a % 100)))
    rcall('ZADD', 'lean:group:g' .. (a % 100), a, id)
  end
  return 'ok'
end)
redis.register_function('floor_lean', function(_, args)
  bind_standard()
  return floor_steps(tonumber(args[1]) or 20, LEAN)
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
