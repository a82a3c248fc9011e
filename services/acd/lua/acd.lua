-- acd.lua: every change of live ACD state, one atomic script per operation.
--
-- ARGV[1] is the operation, ARGV[2] the time in ms (the caller's clock, so a
-- test can drive time), then the operation's arguments. No KEYS are passed:
-- all keys live under the "acd:" prefix of one Redis (no cluster sharding).
--
-- Keys
--   acd:queues                 set of queue names
--   acd:queue:<q>              hash: strategy, offer_ms, wrap_ms, widen, max_len, sticky_ms
--   acd:queue:<q>:wait         zset call -> rank (priority first, then arrival)
--   acd:queue:<q>:ready        zset agent -> rank by the queue's strategy
--   acd:agent:<a>              hash: state, since, reason, call, ext, queues, calls, last_offer
--   acd:agent:<a>:skills       hash: skill -> level
--   acd:call:<c>               hash: queue, prio, enq, rank, skills, state, agent, last_agent,
--                              sticky_until, customer, caller, flags
--   acd:offers                 zset call -> offer deadline
--   acd:wrapups                zset agent -> wrap-up end
--   acd:due                    zset call -> when its routing options change next
--                              (a sticky hold ends, a widen rule starts)
--   acd:seq                    counter for round robin
--
-- Returns a list of actions, each a list of strings, for the caller to
-- publish as events and carry out (ring the agent):
--   {"entered", call, queue, prio, position}
--   {"offer", call, agent, queue, wait_ms, ext, customer, caller, flags}
--   {"answered", call, agent, queue, wait_ms}
--   {"abandoned", call, queue, wait_ms, position}
--   {"requeued", call, agent, queue}
--   {"agent", agent, state, previous, ms_in_previous, reason, call}
--   {"error", code, text}            (code: bad_request | not_found | conflict | full)
--   {"ok", detail...}

local op = ARGV[1]
local now = tonumber(ARGV[2])
local out = {}

local PRIO_SPAN = 10000000000000   -- 1e13 ms (> 300 years) per priority step
local SCAN = 64                    -- candidates looked at per decision

local function emit(t) out[#out + 1] = t end
local function fail(code, text) return { { "error", code, text } } end

local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

local function split(s, sep)
  local t = {}
  if not s or s == '' then return t end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do t[#t + 1] = part end
  return t
end

-- "sales:5,english:1" -> { {"sales", 5}, {"english", 1} }
local function parse_skills(s)
  local t = {}
  for _, item in ipairs(split(s, ',')) do
    local name, level = string.match(item, '^([^:]+):?(%d*)$')
    if name then t[#t + 1] = { name, tonumber(level) or 0 } end
  end
  return t
end

-- Levels the call still demands after waiting wait_ms: the queue's widen
-- rules "30000:2,60000:0,90000:-1" lower every required level by 2 after
-- 30 s, to 0 (any level) after 60 s, and drop the skills after 90 s (-1).
local function effective_skills(call, qconf, wait)
  local skills = parse_skills(call.skills)
  local cut = nil
  for _, rule in ipairs(split(qconf.widen or '', ',')) do
    local after, lower = string.match(rule, '^(%d+):(%-?%d+)$')
    if after and wait >= tonumber(after) then cut = tonumber(lower) end
  end
  if cut == -1 then return {} end
  if cut then
    for _, s in ipairs(skills) do
      s[2] = (cut == 0) and 0 or math.max(0, s[2] - cut)
    end
  end
  return skills
end

local function agent_qualifies(agent, skills)
  if #skills == 0 then return true end
  local names = {}
  for i, s in ipairs(skills) do names[i] = s[1] end
  local levels = redis.call('HMGET', 'acd:agent:' .. agent .. ':skills', unpack(names))
  for i, s in ipairs(skills) do
    local have = tonumber(levels[i])
    if not have or have < s[2] then return false end
  end
  return true
end

-- Queue settings, read once per script run.
local conf_cache = {}
local function qconf(q)
  local conf = conf_cache[q]
  if conf == nil then
    conf = hgetall('acd:queue:' .. q) or false
    conf_cache[q] = conf
  end
  return conf or nil
end

-- Whether a call's routing options change with time (sticky hold, widen).
local function timed(c, conf)
  return tonumber(c.sticky_until or 0) > 0 or (conf.widen or '') ~= ''
end

-- Rank of a ready agent in queue q (lower is offered first).
local function ready_rank(q, conf, agent, a)
  local strategy = conf.strategy or 'longest_idle'
  local since = tonumber(a.since) or now
  if strategy == 'fewest_calls' then
    return (tonumber(a.calls) or 0) * PRIO_SPAN + since
  elseif strategy == 'round_robin' then
    return tonumber(a.last_offer) or 0
  elseif strategy == 'best_skill' then
    local first = parse_skills(conf.skills or '')[1]
    local level = first and tonumber(redis.call('HGET', 'acd:agent:' .. agent .. ':skills', first[1])) or 0
    return -(level or 0) * PRIO_SPAN + since
  end
  return since
end

-- Moves agent a (hash) to state; keeps the ready sets and wrap-ups in step
-- and emits the agent event.
local function set_state(agent, a, state, reason, call)
  local prev, since = a.state or 'logged_out', tonumber(a.since) or now
  if prev == 'ready' then
    for _, q in ipairs(split(a.queues, ',')) do redis.call('ZREM', 'acd:queue:' .. q .. ':ready', agent) end
  end
  if prev == 'wrap_up' then redis.call('ZREM', 'acd:wrapups', agent) end
  a.state, a.since, a.reason, a.call = state, now, reason or '', call or ''
  redis.call('HSET', 'acd:agent:' .. agent, 'state', state, 'since', now, 'reason', a.reason, 'call', a.call)
  if state == 'ready' then
    for _, q in ipairs(split(a.queues, ',')) do
      local conf = qconf(q)
      if conf then redis.call('ZADD', 'acd:queue:' .. q .. ':ready', ready_rank(q, conf, agent, a), agent) end
    end
  end
  emit({ 'agent', agent, state, prev, tostring(now - since), a.reason, a.call })
end

local function reserve(call, c, agent, a)
  local q = c.queue
  local conf = qconf(q) or {}
  redis.call('ZREM', 'acd:queue:' .. q .. ':wait', call)
  if timed(c, conf) then redis.call('ZREM', 'acd:due', call) end
  local seq = redis.call('INCR', 'acd:seq')
  redis.call('HSET', 'acd:agent:' .. agent, 'last_offer', seq)
  set_state(agent, a, 'reserved', '', call)
  redis.call('HSET', 'acd:call:' .. call, 'state', 'offered', 'agent', agent, 'offered', now)
  redis.call('ZADD', 'acd:offers', now + (tonumber(conf.offer_ms) or 15000), call)
  emit({ 'offer', call, agent, q, tostring(now - tonumber(c.enq)), a.ext or '', c.customer or '',
         c.caller or '', c.flags or '' })
end

-- Offers waiting call to the best ready agent of its queue, if any.
local function route_call(call)
  local c = hgetall('acd:call:' .. call)
  if not c or c.state ~= 'waiting' then return end
  local q = c.queue
  local conf = qconf(q)
  if not conf then return end
  local wait = now - tonumber(c.enq)
  local skills = effective_skills(c, conf, wait)
  if c.last_agent ~= '' and tonumber(c.sticky_until or 0) > now then
    -- Held for the agent who served this customer last.
    local agent = c.last_agent
    if redis.call('ZSCORE', 'acd:queue:' .. q .. ':ready', agent) then
      reserve(call, c, agent, hgetall('acd:agent:' .. agent))
    end
    return
  end
  local agents = redis.call('ZRANGE', 'acd:queue:' .. q .. ':ready', 0, SCAN - 1)
  for _, agent in ipairs(agents) do
    if agent_qualifies(agent, skills) then
      reserve(call, c, agent, hgetall('acd:agent:' .. agent))
      return
    end
  end
end

-- Offers the best waiting call of the agent's queues to a ready agent: the
-- lowest rank wins across queues (priority, then the longest wait), so an
-- agent in several queues serves them fairly.
local function route_agent(agent)
  local a = hgetall('acd:agent:' .. agent)
  if not a or a.state ~= 'ready' then return end
  local best, best_rank, best_c = nil, nil, nil
  for _, q in ipairs(split(a.queues, ',')) do
    local conf = qconf(q)
    if conf then
      local calls = redis.call('ZRANGE', 'acd:queue:' .. q .. ':wait', 0, SCAN - 1, 'WITHSCORES')
      for i = 1, #calls, 2 do
        local call, rank = calls[i], tonumber(calls[i + 1])
        if best_rank and rank >= best_rank then break end
        local c = hgetall('acd:call:' .. call)
        local held = c.last_agent ~= '' and c.last_agent ~= agent and tonumber(c.sticky_until or 0) > now
        if not held and agent_qualifies(agent, effective_skills(c, conf, now - tonumber(c.enq))) then
          best, best_rank, best_c = call, rank, c
          break
        end
      end
    end
  end
  if best then reserve(best, best_c, agent, a) end
end

local function load_agent(agent)
  local a = hgetall('acd:agent:' .. agent)
  return a
end

local function finish_call(call, c)
  redis.call('DEL', 'acd:call:' .. call)
  if c.state == 'offered' then redis.call('ZREM', 'acd:offers', call) end
  if timed(c, qconf(c.queue) or {}) then redis.call('ZREM', 'acd:due', call) end
end

-- When a waiting call's routing options change next: its sticky hold ends
-- or a widen rule of its queue starts. Scheduled in acd:due for the tick.
local function schedule(call, c, conf)
  local enq, next_at = tonumber(c.enq), nil
  local sticky = tonumber(c.sticky_until or 0)
  if sticky > now then next_at = sticky end
  for _, rule in ipairs(split(conf.widen or '', ',')) do
    local after = tonumber(string.match(rule, '^(%d+):'))
    if after and enq + after > now and (not next_at or enq + after < next_at) then next_at = enq + after end
  end
  if next_at then redis.call('ZADD', 'acd:due', next_at, call) else redis.call('ZREM', 'acd:due', call) end
end

-- Puts an offered call back at its place (its rank keeps its arrival time)
-- and the agent in not_ready(reason).
local function withdraw_offer(call, c, reason)
  local agent = c.agent
  local a = load_agent(agent)
  redis.call('ZREM', 'acd:offers', call)
  redis.call('HSET', 'acd:call:' .. call, 'state', 'waiting', 'agent', '')
  redis.call('ZADD', 'acd:queue:' .. c.queue .. ':wait', tonumber(c.rank), call)
  schedule(call, c, qconf(c.queue) or {})
  if a and a.state == 'reserved' and a.call == call then set_state(agent, a, 'not_ready', reason, '') end
  emit({ 'requeued', call, agent, c.queue })
end

local ops = {}

-- login agent ext queues skills: skills "sales:5,english:2"; queues "sales,vip".
function ops.login(agent, ext, queues, skills)
  if not agent or agent == '' then return fail('bad_request', 'agent id missing') end
  local key = 'acd:agent:' .. agent
  local a = hgetall(key) or { state = 'logged_out', since = tostring(now) }
  if a.state ~= 'logged_out' then return fail('conflict', 'agent ' .. agent .. ' is already logged in') end
  for _, q in ipairs(split(queues, ',')) do
    if redis.call('SISMEMBER', 'acd:queues', q) == 0 then return fail('not_found', 'no queue ' .. q) end
  end
  redis.call('DEL', key .. ':skills')
  for _, s in ipairs(parse_skills(skills)) do redis.call('HSET', key .. ':skills', s[1], s[2]) end
  redis.call('HSET', key, 'ext', ext or '', 'queues', queues or '', 'calls', a.calls or 0)
  redis.call('SADD', 'acd:agents', agent)
  a.ext, a.queues = ext, queues
  set_state(agent, a, 'ready', 'login', '')
  route_agent(agent)
  return out
end

-- The agent state machine: which requested states each state allows. A
-- supervisor's force may also leave wrap_up and not_ready at once; nobody
-- leaves reserved or on_call by request (the call decides).
local allowed = {
  ready     = { not_ready = true, logged_out = true },
  not_ready = { ready = true, logged_out = true, not_ready = true },
  wrap_up   = { ready = true, not_ready = true, logged_out = true },
  reserved  = {},
  on_call   = { not_ready = 'after' },   -- takes effect when the call ends
}

-- set_state agent state reason: ready | not_ready | logged_out.
function ops.set_state(agent, state, reason)
  local a = load_agent(agent)
  if not a or a.state == 'logged_out' then return fail('not_found', 'agent ' .. tostring(agent) .. ' is not logged in') end
  if state ~= 'ready' and state ~= 'not_ready' and state ~= 'logged_out' then
    return fail('bad_request', 'cannot request state ' .. tostring(state))
  end
  local rule = (allowed[a.state] or {})[state]
  if rule == 'after' then
    redis.call('HSET', 'acd:agent:' .. agent, 'after_call', reason ~= '' and reason or 'requested')
    return { { 'ok', 'pending' } }
  end
  if not rule then return fail('conflict', 'agent ' .. agent .. ' is ' .. a.state .. ', cannot go ' .. state) end
  set_state(agent, a, state, reason, '')
  if state == 'ready' then route_agent(agent) end
  if state == 'logged_out' then redis.call('SREM', 'acd:agents', agent) end
  return out
end

-- enqueue call queue prio skills customer last_agent caller flags
function ops.enqueue(call, q, prio, skills, customer, last_agent, caller, flags)
  if not call or call == '' then return fail('bad_request', 'call id missing') end
  local conf = qconf(q)
  if not conf then return fail('not_found', 'no queue ' .. tostring(q)) end
  if redis.call('EXISTS', 'acd:call:' .. call) == 1 then return fail('conflict', 'call ' .. call .. ' is already queued') end
  local max_len = tonumber(conf.max_len) or 0
  if max_len > 0 and redis.call('ZCARD', 'acd:queue:' .. q .. ':wait') >= max_len then
    return fail('full', 'queue ' .. q .. ' is full')
  end
  prio = math.max(0, math.min(9, tonumber(prio) or 0))
  local rank = (9 - prio) * PRIO_SPAN + now
  local required = conf.skills or ''
  if skills and skills ~= '' then required = (required ~= '' and (required .. ',') or '') .. skills end
  local sticky_until = 0
  if last_agent and last_agent ~= '' and tonumber(conf.sticky_ms or 0) > 0 then
    sticky_until = now + tonumber(conf.sticky_ms)
  end
  redis.call('HSET', 'acd:call:' .. call, 'queue', q, 'prio', prio, 'enq', now, 'rank', rank,
             'skills', required, 'state', 'waiting', 'agent', '', 'last_agent', last_agent or '',
             'sticky_until', sticky_until, 'customer', customer or '', 'caller', caller or '',
             'flags', flags or '')
  redis.call('ZADD', 'acd:queue:' .. q .. ':wait', rank, call)
  local position = redis.call('ZRANK', 'acd:queue:' .. q .. ':wait', call) + 1
  emit({ 'entered', call, q, tostring(prio), tostring(position) })
  route_call(call)
  if sticky_until > 0 or (conf.widen or '') ~= '' then
    local c = hgetall('acd:call:' .. call)
    if c.state == 'waiting' then schedule(call, c, conf) end
  end
  return out
end

-- answered call agent: the agent's phone answered the offer.
function ops.answered(call, agent)
  local c = hgetall('acd:call:' .. call)
  if not c then return fail('not_found', 'no call ' .. tostring(call)) end
  if c.state ~= 'offered' or c.agent ~= agent then
    return fail('conflict', 'call ' .. call .. ' is not offered to ' .. tostring(agent))
  end
  redis.call('ZREM', 'acd:offers', call)
  redis.call('HSET', 'acd:call:' .. call, 'state', 'answered', 'answered', now)
  local a = load_agent(agent)
  redis.call('HINCRBY', 'acd:agent:' .. agent, 'calls', 1)
  a.calls = tostring((tonumber(a.calls) or 0) + 1)
  set_state(agent, a, 'on_call', '', call)
  emit({ 'answered', call, agent, c.queue, tostring(now - tonumber(c.enq)) })
  return out
end

-- rejected call agent: the agent declined or could not be rung.
function ops.rejected(call, agent, reason)
  local c = hgetall('acd:call:' .. call)
  if not c or c.state ~= 'offered' or c.agent ~= agent then return fail('conflict', 'no such offer') end
  withdraw_offer(call, c, reason ~= '' and reason or 'rejected')
  route_call(call)
  return out
end

-- ended call: the caller or the agent hung up, whatever the call's state.
function ops.ended(call)
  local c = hgetall('acd:call:' .. call)
  if not c then return fail('not_found', 'no call ' .. tostring(call)) end
  local q = c.queue
  local conf = qconf(q) or {}
  if c.state == 'waiting' then
    local position = (redis.call('ZRANK', 'acd:queue:' .. q .. ':wait', call) or 0) + 1
    redis.call('ZREM', 'acd:queue:' .. q .. ':wait', call)
    emit({ 'abandoned', call, q, tostring(now - tonumber(c.enq)), tostring(position) })
  elseif c.state == 'offered' then
    -- Hung up while the agent's phone rang: an abandon; the agent is free.
    emit({ 'abandoned', call, q, tostring(now - tonumber(c.enq)), '0' })
    local a = load_agent(c.agent)
    if a and a.state == 'reserved' and a.call == call then
      set_state(c.agent, a, 'ready', '', '')
      finish_call(call, c)
      route_agent(c.agent)
      return out
    end
  elseif c.state == 'answered' then
    local a = load_agent(c.agent)
    if a and a.state == 'on_call' and a.call == call then
      local wrap = tonumber(conf.wrap_ms) or 0
      local after = a.after_call
      if after and after ~= '' then
        redis.call('HDEL', 'acd:agent:' .. c.agent, 'after_call')
        set_state(c.agent, a, 'not_ready', after, '')
      elseif wrap > 0 then
        set_state(c.agent, a, 'wrap_up', '', call)
        redis.call('ZADD', 'acd:wrapups', now + wrap, c.agent)
      else
        set_state(c.agent, a, 'ready', '', '')
        finish_call(call, c)
        route_agent(c.agent)
        return out
      end
    end
  end
  finish_call(call, c)
  return out
end

-- tick: everything due by now: offers not answered in time, wrap-ups over,
-- sticky holds ended and skills widened.
function ops.tick()
  for _, call in ipairs(redis.call('ZRANGEBYSCORE', 'acd:offers', '-inf', now, 'LIMIT', 0, 100)) do
    local c = hgetall('acd:call:' .. call)
    if c and c.state == 'offered' then
      withdraw_offer(call, c, 'no_answer')
      route_call(call)
    else
      redis.call('ZREM', 'acd:offers', call)
    end
  end
  for _, agent in ipairs(redis.call('ZRANGEBYSCORE', 'acd:wrapups', '-inf', now, 'LIMIT', 0, 100)) do
    local a = load_agent(agent)
    redis.call('ZREM', 'acd:wrapups', agent)
    if a and a.state == 'wrap_up' then
      set_state(agent, a, 'ready', '', '')
      route_agent(agent)
    end
  end
  for _, call in ipairs(redis.call('ZRANGEBYSCORE', 'acd:due', '-inf', now, 'LIMIT', 0, 100)) do
    redis.call('ZREM', 'acd:due', call)
    route_call(call)
    local c = hgetall('acd:call:' .. call)
    if c and c.state == 'waiting' then schedule(call, c, qconf(c.queue) or {}) end
  end
  return out
end

-- queue name strategy offer_ms wrap_ms widen max_len sticky_ms skills:
-- defines or updates a queue (from the acd.queues table).
function ops.queue(q, strategy, offer_ms, wrap_ms, widen, max_len, sticky_ms, skills)
  redis.call('SADD', 'acd:queues', q)
  redis.call('HSET', 'acd:queue:' .. q, 'strategy', strategy, 'offer_ms', offer_ms, 'wrap_ms', wrap_ms,
             'widen', widen, 'max_len', max_len, 'sticky_ms', sticky_ms, 'skills', skills)
  return { { 'ok', q } }
end

local fn = ops[op]
if not fn then return fail('bad_request', 'unknown operation ' .. tostring(op)) end
if not now then return fail('bad_request', 'time missing') end
return fn(unpack(ARGV, 3))
