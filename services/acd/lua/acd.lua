-- acd.lua: every change of live ACD state, each operation atomic.
--
-- A Redis function library (cc_redis_function): loaded once, its one
-- function runs a batch of operations in one atomic call, like a script
-- (see the end of the file). Each operation comes with its time in ms (the
-- caller's clock, so a test can drive time) and its arguments. No KEYS are
-- passed: all keys live under the "acd:" prefix of one Redis (no cluster
-- sharding). What is built at the top level (functions, constant tables)
-- is built when Redis loads the library, not on every call.
--
-- Keys
--   acd:queues                 set of queue names
--   acd:queue:<q>              hash: strategy, offer_ms, wrap_ms, widen, max_len, sticky_ms,
--                              skills, overflow, overflow_ms, max_wait_ms, max_wait_action,
--                              join_empty, leave_empty, closed_action, aht_ms (average
--                              handle time, for the estimated wait)
--   acd:queue:<q>:members      set of logged-in agents of the queue
--   acd:queue:<q>:wait         zset call -> rank (priority first, then arrival)
--   acd:queue:<q>:held         zset call -> rank: the queue's waiting callbacks while its
--                              calling hours are closed (offered to nobody; agents becoming
--                              ready look only at the wait set). Moved back when they begin.
--   acd:queue:<q>:ready        zset agent -> rank by the queue's strategy
--   acd:agent:<a>              hash: state, since, reason, call, ext, queues, calls, last_offer,
--                              after_call, ranks (its queues' strategies), skills (as logged in,
--                              read with the rest on each decision)
--   acd:agent:<a>:skills       hash: skill -> level
--   acd:call:<c>               hash: queue, prio, enq (arrival), qenq (entered this queue),
--                              rank, skills, state, agent, last_agent, sticky_until,
--                              customer, caller, flags, kind (call | callback), number,
--                              attempts, answered
--   acd:offers                 zset call -> offer deadline
--   acd:wrapups                zset agent -> wrap-up end
--   acd:restoring              zset agent -> end of its hold after a restore (its phone
--                              may still ring with an offer Redis forgot)
--   acd:due                    zset call -> when its routing options change next
--                              (a sticky hold ends, a widen rule starts, overflow,
--                              the maximum wait, a callback's expiry)
--   acd:seq                    counter for round robin
--   acd:strategies             hash: queue -> "strategy skills" (ranking ready agents
--                              reads only this)
--   acd:req:<10 s period>      hash: request id -> "<batch id> <index>" (a request id
--                              starting with "#" gets one more "#"), and
--                              "#<batch id>" -> the batch's results (JSON): kept 20 to
--                              30 s so that neither a retry nor a batch sent again acts
--                              twice (retries are looked up in the last two
--                              periods). One hash per period, not a key per batch:
--                              the keyspace stays small (each command looks its key
--                              up in it), and a period goes at once (UNLINK).
--   acd:conf:gen               changes with every change of a queue's settings
--
-- Returns a list of actions, each a list of strings, for the caller to
-- publish as events and carry out (ring the agent):
--   {"entered", call, queue, prio, position}
--   {"offer", call, agent, queue, wait_ms, ext, customer, caller, flags, kind, number}
--   {"answered", call, agent, queue, wait_ms, within_service_level, kind}
--   {"abandoned", call, queue, wait_ms, position}
--   {"requeued", call, agent, queue, reason, hold_until, attempts}  (the last two for callback_no_answer)
--   {"callback_done", call}  (a kept callback is done: its customer's call came back answered)
--   {"overflowed", call, from_queue, to_queue, wait_ms}
--   {"left", call, queue, wait_ms, reason, kind}  (timeout | empty | cancelled | queue_removed
--                                           | callback_failed | callback_expired)
--   {"callback", call, queue, number, position, prio, rank, enq, expires, customer, caller, skills, qenq}
--   {"agent", agent, state, previous, ms_in_previous, reason, call}
--   {"error", code, text}  (code: bad_request | not_found | conflict | full | empty | closed
--                           | internal: the operation failed in the script)
--   {"position", call, position, estimated_wait_ms, music}
--   {"announce", call, queue, position, estimated_wait_ms}   (time to tell the caller)
--   {"queue_status", queue, waiting, ready, longest_wait_ms, callbacks, calling_hours_closed}  (status)
--   {"agent_status", agent, state, since, reason, call, queues, ext, skills}  (status)
--   {"ok", detail...}

-- The standard functions (and redis.call) as locals, which a call reaches
-- without looking their names up in the globals table (two table reads
-- for each redis.call). A library being loaded sees none of them: they are
-- bound at the first call.
local function standard()
  return tonumber, tostring, ipairs, pairs, unpack, type, pcall, string, table, math, cjson, redis.call
end
local tonumber, tostring, ipairs, pairs, unpack, type, pcall, string, table, math, cjson, rcall
local function bind_standard()
  if not rcall then tonumber, tostring, ipairs, pairs, unpack, type, pcall, string, table, math, cjson, rcall = standard() end
end

local now = 0      -- the time of the operation being run
local now_s = '0'  -- the same as a string (numbers given to Redis are formatted, which costs)
local out = {}     -- its actions

local PRIO_SPAN = 10000000000000   -- 1e13 ms (> 300 years) per priority step
local PAGE = 8                     -- candidates read at a time
local SCAN = 64                    -- candidates looked at per decision, at most

local function emit(t) out[#out + 1] = t end
local function fail(code, text) return { { "error", code, text } } end

-- An integral number as text. tostring formats through "%.14g" (the
-- floating-point path of printf, several times dearer); the digits, which a
-- decision uses most (priorities, positions), are written out.
local SMALL = { [0] = '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' }
local function int(x) return SMALL[x] or string.format('%d', x) end

local function hgetall(key)
  local flat = rcall('HGETALL', key)
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

-- The same lists (queues of an agent, skills, widen rules, ranks) come back
-- many times: each text is parsed once, and kept from call to call (a
-- parse depends on its text alone). The tables returned are shared: callers
-- read them, never change them. Past MEMO_MAX texts they are all dropped.
local memo_list, memo_skills, memo_widen, memo_levels, memo_ranks, memo_conf = {}, {}, {}, {}, {}, {}
local memo_n, MEMO_MAX = 0, 20000

-- "a,b,c" -> { "a", "b", "c" } (shared)
local function list(s)
  if not s or s == '' then return {} end
  local t = memo_list[s]
  if not t then
    t = split(s, ',')
    memo_list[s] = t
    memo_n = memo_n + 1
  end
  return t
end

-- "sales:5,english:1" -> { {"sales", 5}, {"english", 1}, names = {"sales", "english"} } (shared)
local function parse_skills(s)
  s = s or ''
  local t = memo_skills[s]
  if t then return t end
  t = { names = {} }
  for _, item in ipairs(split(s, ',')) do
    local name, level = string.match(item, '^([^:]+):?(%d*)$')
    if name then
      t[#t + 1] = { name, tonumber(level) or 0 }
      t.names[#t] = name
    end
  end
  memo_skills[s] = t
  memo_n = memo_n + 1
  return t
end

-- "30000:2,60000:0" -> { {30000, 2}, {60000, 0} } (shared)
local function parse_widen(s)
  s = s or ''
  local t = memo_widen[s]
  if t then return t end
  t = {}
  for _, rule in ipairs(split(s, ',')) do
    local after, lower = string.match(rule, '^(%d+):(%-?%d+)$')
    if after then t[#t + 1] = { tonumber(after), tonumber(lower) } end
  end
  memo_widen[s] = t
  memo_n = memo_n + 1
  return t
end

-- Levels the call still demands after waiting wait_ms: the queue's widen
-- rules "30000:2,60000:0,90000:-1" lower every required level by 2 after
-- 30 s, to 0 (any level) after 60 s, and drop the skills after 90 s (-1).
local NO_SKILLS = { names = {} }
local function effective_skills(call, qconf, wait)
  local skills = parse_skills(call.skills)
  local cut = nil
  for _, rule in ipairs(parse_widen(qconf.widen)) do
    if wait >= rule[1] then cut = rule[2] end
  end
  if cut == -1 then return NO_SKILLS end
  if not cut then return skills end
  local t = { names = skills.names }
  for i, s in ipairs(skills) do t[i] = { s[1], (cut == 0) and 0 or math.max(0, s[2] - cut) } end
  return t
end

local function agent_qualifies(agent, skills)
  if #skills == 0 then return true end
  local levels = rcall('HMGET', 'acd:agent:' .. agent .. ':skills', unpack(skills.names))
  for i, s in ipairs(skills) do
    local have = tonumber(levels[i])
    if not have or have < s[2] then return false end
  end
  return true
end

-- An agent's hash (the fields the script uses), nil when unknown. Built by
-- one constructor (sized at once): agents are read on every decision.
local function load_agent(agent)
  local f = rcall('HMGET', 'acd:agent:' .. agent, 'state', 'since', 'reason', 'call', 'ext', 'queues', 'calls',
                       'last_offer', 'after_call', 'ranks', 'skills')
  if not f[1] and not f[6] then return nil end
  return { state = f[1] or nil, since = f[2] or nil, reason = f[3] or nil, call = f[4] or nil, ext = f[5] or nil,
           queues = f[6] or nil, calls = f[7] or nil, last_offer = f[8] or nil, after_call = f[9] or nil,
           ranks = f[10] or nil, skills = f[11] or nil }
end

-- "sales:5,english:1" -> { sales = 5, english = 1 } (shared)
local function levels_of(s)
  local t = memo_levels[s]
  if t then return t end
  t = {}
  for _, sk in ipairs(parse_skills(s)) do t[sk[1]] = sk[2] end
  memo_levels[s] = t
  memo_n = memo_n + 1
  return t
end

-- Whether agent (its hash a) meets skills, read from its hash's copy of
-- its skills (its skills hash for an agent logged in before the copy).
local function has_skills(agent, a, skills)
  if #skills == 0 then return true end
  if not a.skills then return agent_qualifies(agent, skills) end
  local levels = levels_of(a.skills)
  for _, sk in ipairs(skills) do
    local have = levels[sk[1]]
    if not have or have < sk[2] then return false end
  end
  return true
end

-- Queue settings, read from acd:queue:<q>:conf: the hash's fields (but
-- aht_ms, which changes with every call) packed into one string, separated
-- by \31, in QUEUE_FIELDS order. One string is read and split by one match
-- (a fifth of the cost of reading the hash's fields), and the split is
-- kept by its text (shared, read only).
--
-- What was read (settings and strategies, by queue) is kept from call to
-- call while acd:conf:gen holds the text it held when they were read:
-- every change of a queue (qforget) writes a new one, so a call checks one
-- key instead of reading each queue it routes for. A Redis that lost its
-- data has none, and then nothing is kept.
local QUEUE_FIELDS = { 'strategy', 'offer_ms', 'wrap_ms', 'widen', 'max_len', 'sticky_ms', 'skills', 'overflow',
                       'overflow_ms', 'max_wait_ms', 'max_wait_action', 'join_empty', 'leave_empty', 'closed_action',
                       'cb_attempts', 'cb_retry_ms', 'cb_expire_ms', 'open', 'sl_ms', 'blacklist_queue', 'music',
                       'announce_ms' }
local CONF_SEP = '\31'
local CONF_PATTERN = nil   -- made at the first call (loading a library may not call string)
local conf_cache, lite_cache, cb_cache = {}, {}, {}
local conf_gen = nil       -- the acd:conf:gen they belong to
local conf_n, CONF_MAX = 0, 10000   -- queues read (unknown names too), dropped past CONF_MAX
local gen_serial = 0
local function qconf(q)
  local conf = conf_cache[q]
  if conf == nil then
    conf_n = conf_n + 1
    CONF_PATTERN = CONF_PATTERN or '^' .. string.rep('([^\31]*)\31', #QUEUE_FIELDS - 1) .. '([^\31]*)$'
    local packed = rcall('GET', 'acd:queue:' .. q .. ':conf')
    conf = packed and memo_conf[packed]
    if packed and not conf then
      -- One table, made by one constructor (sized at once), in QUEUE_FIELDS order.
      local f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22 =
        string.match(packed, CONF_PATTERN)
      if f22 then
        conf = { strategy = f1, offer_ms = f2, wrap_ms = f3, widen = f4, max_len = f5, sticky_ms = f6, skills = f7,
                 overflow = f8, overflow_ms = f9, max_wait_ms = f10, max_wait_action = f11, join_empty = f12,
                 leave_empty = f13, closed_action = f14, cb_attempts = f15, cb_retry_ms = f16, cb_expire_ms = f17,
                 open = f18, sl_ms = f19, blacklist_queue = f20, music = f21, announce_ms = f22 }
        memo_conf[packed] = conf
        memo_n = memo_n + 1
      end
    end
    conf = conf or false
    conf_cache[q] = conf
  end
  return conf or nil
end

-- Packs queue q's settings (its hash) into acd:queue:<q>:conf, after a change.
local function write_conf(q)
  local f = rcall('HMGET', 'acd:queue:' .. q, unpack(QUEUE_FIELDS))
  for i = 1, #QUEUE_FIELDS do f[i] = f[i] or '' end
  rcall('SET', 'acd:queue:' .. q .. ':conf', table.concat(f, CONF_SEP))
end

-- Whether queue q's calling hours allow a callback to be offered now (kept
-- with the settings, and dropped with them).
local function may_call_back(q)
  local open = cb_cache[q]
  if open == nil then
    open = rcall('HGET', 'acd:queue:' .. q, 'cb_open') ~= '0'
    cb_cache[q] = open
  end
  return open
end

-- The set a waiting call c belongs in: its queue's wait set, or for a
-- callback outside the calling hours, its held set.
local function wait_key(c)
  if c.kind == 'callback' and not may_call_back(c.queue) then return 'acd:queue:' .. c.queue .. ':held' end
  return 'acd:queue:' .. c.queue .. ':wait'
end

-- The queue's average handle time (ms, 0 when no call ended yet).
local function aht(q)
  return tonumber(rcall('HGET', 'acd:queue:' .. q, 'aht_ms') or 0) or 0
end

-- The strategy and required skills of each of queues qs (what ranking a
-- ready agent needs), read at once from acd:strategies (cheaper than their
-- settings): a list of { strategy =, skills = }, false for no such queue.
local function qlites(qs)
  local missing = {}
  for _, q in ipairs(qs) do
    if conf_cache[q] == nil and lite_cache[q] == nil then missing[#missing + 1] = q end
  end
  if #missing > 0 then
    local f = rcall('HMGET', 'acd:strategies', unpack(missing))
    conf_n = conf_n + #missing
    for i, q in ipairs(missing) do
      local strategy, skills = string.match(f[i] or '', '^(%S+) (.*)$')
      lite_cache[q] = strategy and { strategy = strategy, skills = skills } or false
    end
  end
  local out_ = {}
  for i, q in ipairs(qs) do out_[i] = conf_cache[q] or lite_cache[q] end
  return out_
end

-- Forgets what was read of queue q, which is being changed, and tells
-- every other call so (a new acd:conf:gen: the time and a counter, unique).
local function qforget(q)
  conf_cache[q], lite_cache[q], cb_cache[q] = nil, nil, nil
  local t = rcall('TIME')
  gen_serial = gen_serial + 1
  conf_gen = t[1] .. '.' .. t[2] .. '.' .. int(gen_serial)
  rcall('SET', 'acd:conf:gen', conf_gen)
end

-- At the start of a call: drops what was read of the queues if any queue
-- changed since (or Redis lost its data).
local function qcheck()
  local gen = rcall('GET', 'acd:conf:gen')
  if not gen or gen ~= conf_gen or conf_n > CONF_MAX then
    conf_cache, lite_cache, cb_cache, conf_gen, conf_n = {}, {}, {}, gen, 0
  end
end

-- An agent's "ranks": what ranking it in each of its queues takes (the
-- queues' acd:strategies entries, "-" for a queue gone, joined by ";"),
-- kept in its hash so that becoming ready reads nothing more.
local function ranks_of(qs)
  if #qs == 0 then return '' end
  local raw = rcall('HMGET', 'acd:strategies', unpack(qs))
  for i = 1, #qs do raw[i] = raw[i] or '-' end
  return table.concat(raw, ';')
end

-- The ranks string parsed: a list of { strategy =, skills = } (false for a
-- queue gone), shared.
local function parse_ranks(s)
  local t = memo_ranks[s]
  if t then return t end
  t = {}
  for part in string.gmatch(s, '([^;]+)') do
    local strategy, skills = string.match(part, '^(%S+) (.*)$')
    t[#t + 1] = strategy and { strategy = strategy, skills = skills } or false
  end
  memo_ranks[s] = t
  memo_n = memo_n + 1
  return t
end

-- What ranking agent a (hash) takes in each of its queues qs.
local function agent_lites(a, qs)
  local t = a.ranks and parse_ranks(a.ranks)
  if t and #t == #qs then return t end
  return qlites(qs)   -- an agent logged in before ranks were kept
end

-- Whether a call's routing options change with time (sticky hold, widen, a
-- hold before it is offered again).
local function timed(c, conf)
  return tonumber(c.sticky_until or 0) > 0 or (conf.widen or '') ~= '' or c.kind == 'callback'
      or tonumber(c.hold_until or 0) > 0
      or tonumber(conf.announce_ms or 0) > 0
      or tonumber(conf.overflow_ms or 0) > 0 or tonumber(conf.max_wait_ms or 0) > 0
end

-- Rank of a ready agent in queue q (lower is offered first).
local function ready_rank(q, conf, agent, a)
  local strategy = conf.strategy or 'longest_idle'
  if strategy == 'longest_idle' then return a.since or now_s end
  local since = tonumber(a.since) or now
  if strategy == 'fewest_calls' then
    return (tonumber(a.calls) or 0) * PRIO_SPAN + since
  elseif strategy == 'round_robin' then
    return tonumber(a.last_offer) or 0
  elseif strategy == 'best_skill' then
    local first = parse_skills(conf.skills or '')[1]
    local level = first and tonumber(rcall('HGET', 'acd:agent:' .. agent .. ':skills', first[1])) or 0
    return -(level or 0) * PRIO_SPAN + since
  end
  return since
end

-- Moves agent a (hash) to state; keeps the ready sets and wrap-ups in step
-- and emits the agent event.
local function set_state(agent, a, state, reason, call, ...)
  local prev, since = a.state or 'logged_out', tonumber(a.since) or now
  if prev == 'ready' then
    for _, q in ipairs(list(a.queues)) do rcall('ZREM', 'acd:queue:' .. q .. ':ready', agent) end
  end
  if prev == 'wrap_up' then rcall('ZREM', 'acd:wrapups', agent) end
  a.state, a.since, a.reason, a.call = state, now_s, reason or '', call or ''
  rcall('HSET', 'acd:agent:' .. agent, 'state', state, 'since', now_s, 'reason', a.reason, 'call', a.call, ...)
  if state == 'ready' then
    local qs = list(a.queues)
    local confs = agent_lites(a, qs)
    for i, q in ipairs(qs) do
      if confs[i] then rcall('ZADD', 'acd:queue:' .. q .. ':ready', ready_rank(q, confs[i], agent, a), agent) end
    end
  end
  emit({ 'agent', agent, state, prev, int(now - since), a.reason, a.call })
end

-- The next value of acd:seq (round robin's order of offers): read once per
-- script run, counted here and written back at its end (one GET and one SET
-- for a batch instead of an INCR per offer; the run is atomic).
local seq_at = nil
local function next_seq()
  if not seq_at then seq_at = tonumber(rcall('GET', 'acd:seq') or '0') or 0 end
  seq_at = seq_at + 1
  return string.format('%d', seq_at)
end

-- Writes a new call c (its fields are strings) whole. What is empty or at
-- its default is left out (qenq = enq, sticky_until 0, kind call, attempts
-- 0): every reader takes a missing field so, and a short hash costs less.
local function opt(kv, name, v)
  if v and v ~= '' then kv[#kv + 1], kv[#kv + 2] = name, v end
end
local function write_call(call, c)
  local kv = { 'queue', c.queue, 'prio', c.prio, 'enq', c.enq, 'rank', c.rank, 'state', c.state }
  opt(kv, 'skills', c.skills)
  opt(kv, 'agent', c.agent)
  opt(kv, 'offered', c.offered)
  opt(kv, 'last_agent', c.last_agent)
  if c.sticky_until ~= '0' then opt(kv, 'sticky_until', c.sticky_until) end
  opt(kv, 'customer', c.customer)
  opt(kv, 'caller', c.caller)
  opt(kv, 'flags', c.flags)
  rcall('HSET', 'acd:call:' .. call, unpack(kv))
end

-- Offers call c to agent a. A fresh call (just arriving) is written whole
-- here, never having waited; else it leaves its wait set (and acd:due when
-- in_due).
local function reserve(call, c, agent, a, fresh, in_due)
  local q = c.queue
  local conf = qconf(q) or {}
  local seq = next_seq()
  a.last_offer = seq
  set_state(agent, a, 'reserved', '', call, 'last_offer', seq)
  c.state, c.agent = 'offered', agent
  if fresh then
    c.offered = now_s
    write_call(call, c)
  else
    rcall('ZREM', 'acd:queue:' .. q .. ':wait', call)
    if in_due then rcall('ZREM', 'acd:due', call) end
    rcall('HSET', 'acd:call:' .. call, 'state', 'offered', 'agent', agent, 'offered', now_s)
  end
  rcall('ZADD', 'acd:offers', string.format('%d', now + (tonumber(conf.offer_ms) or 15000)), call)
  emit({ 'offer', call, agent, q, int(now - tonumber(c.enq)), a.ext or '', c.customer or '',
         c.caller or '', c.flags or '', c.kind or 'call', c.number or '' })
end

-- The best ready agent of the call's queue for waiting call c, and its
-- hash; nil when none may take it now. Writes nothing but the end of a
-- sticky hold (in c only, for a fresh call not yet written).
local function pick_agent(call, c, conf, fresh)
  local q = c.queue
  if tonumber(c.hold_until or 0) > now then return nil end   -- a callback waiting to retry, or held (call_busy)
  if c.kind == 'callback' and not may_call_back(q) then return nil end   -- outside calling hours
  local skills = effective_skills(c, conf, now - tonumber(c.qenq or c.enq))
  if c.last_agent ~= '' and tonumber(c.sticky_until or 0) > now then
    -- Held for the agent who served this customer last, while that agent is
    -- still logged in to the queue; otherwise anyone may take it.
    local agent = c.last_agent
    if rcall('ZSCORE', 'acd:queue:' .. q .. ':ready', agent) then
      return agent, load_agent(agent)
    end
    if rcall('SISMEMBER', 'acd:queue:' .. q .. ':members', agent) == 1 then return nil end
    if not fresh then rcall('HSET', 'acd:call:' .. call, 'sticky_until', 0) end
    c.sticky_until = '0'
  end
  -- Usually the first ready agent qualifies: read it, then pages of more.
  local key, first, last = 'acd:queue:' .. q .. ':ready', 0, 0
  while first < SCAN do
    local agents = rcall('ZRANGE', key, int(first), int(last))
    for _, agent in ipairs(agents) do
      local a = load_agent(agent)
      if a and has_skills(agent, a, skills) then return agent, a end
    end
    if #agents <= last - first then return nil end
    first, last = last + 1, last + PAGE
  end
  return nil
end

-- Offers waiting call (its hash c, read when not given) to the best ready
-- agent of its queue, if any. Returns whether it was offered.
local function route_call(call, c)
  c = c or hgetall('acd:call:' .. call)
  if not c or c.state ~= 'waiting' then return false end
  local conf = qconf(c.queue)
  if not conf then return false end
  local in_due = timed(c, conf)
  local agent, a = pick_agent(call, c, conf, false)
  if not agent then return false end
  reserve(call, c, agent, a, false, in_due)
  return true
end

-- Offers the best waiting call of the agent's queues to a ready agent: the
-- lowest rank wins across queues (priority, then the longest wait), so an
-- agent in several queues serves them fairly. a: the agent's hash, read
-- when not given.
local function route_agent(agent, a)
  a = a or load_agent(agent)
  if not a or a.state ~= 'ready' then return end
  local qs = list(a.queues)
  if #qs == 0 then return end
  -- Usually no call waits in any of them: one command says so (an empty
  -- wait set does not exist).
  local keys = {}
  for i, q in ipairs(qs) do keys[i] = 'acd:queue:' .. q .. ':wait' end
  if rcall('EXISTS', unpack(keys)) == 0 then return end
  local best, best_rank, best_c = nil, nil, nil
  for _, q in ipairs(qs) do
    local conf = nil   -- read only for a queue with calls waiting
    local done = false
    for first = 0, SCAN - 1, PAGE do
      local calls = rcall('ZRANGE', 'acd:queue:' .. q .. ':wait', int(first), int(first + PAGE - 1), 'WITHSCORES')
      if #calls > 0 and conf == nil then conf = qconf(q) or false end
      if not conf then break end
      for i = 1, #calls, 2 do
        local call, rank = calls[i], tonumber(calls[i + 1])
        if best_rank and rank >= best_rank then done = true break end
        local c = hgetall('acd:call:' .. call)
        if not c then
          -- A wait-set entry without its call: drop it rather than fail.
          rcall('ZREM', 'acd:queue:' .. q .. ':wait', call)
          c = { last_agent = '', sticky_until = '0', hold_until = '0', enq = now_s, skills = '' }
          rank = math.huge
        end
        local held = rank == math.huge
                     or (c.last_agent ~= '' and c.last_agent ~= agent and tonumber(c.sticky_until or 0) > now)
                     or tonumber(c.hold_until or 0) > now
                     or (c.kind == 'callback' and not may_call_back(q))
        if not held and has_skills(agent, a, effective_skills(c, conf, now - tonumber(c.qenq or c.enq))) then
          best, best_rank, best_c = call, rank, c
          done = true
          break
        end
      end
      if done or #calls < 2 * PAGE then break end
    end
  end
  if best then reserve(best, best_c, agent, a, false, timed(best_c, qconf(best_c.queue) or {})) end
end

-- Queue q's calling hours begin: its held callbacks go back to the wait
-- set in their places, and the first of them (ROUTE_MAX at most) are
-- offered at once to its ready agents, while any is ready. Agents who
-- become ready later take the rest, as always.
local ROUTE_MAX, MOVE_MAX = 200, 10000
local function release_callbacks(q)
  local held, wait, ready = 'acd:queue:' .. q .. ':held', 'acd:queue:' .. q .. ':wait', 'acd:queue:' .. q .. ':ready'
  local entries = rcall('ZRANGE', held, 0, -1, 'WITHSCORES')
  if #entries == 0 then return end
  for i = 1, #entries, 1000 do
    local kv = {}
    for j = i, math.min(i + 999, #entries), 2 do kv[#kv + 1], kv[#kv + 2] = entries[j + 1], entries[j] end
    rcall('ZADD', wait, unpack(kv))
  end
  rcall('DEL', held)
  for i = 1, math.min(#entries, 2 * ROUTE_MAX), 2 do
    if rcall('EXISTS', ready) == 0 then break end
    route_call(entries[i])
  end
end

-- Queue q's calling hours end: its waiting callbacks (among the first
-- MOVE_MAX waiting calls) are held, out of the agents' sight.
local function hold_callbacks(q)
  local held, wait = 'acd:queue:' .. q .. ':held', 'acd:queue:' .. q .. ':wait'
  local entries = rcall('ZRANGE', wait, 0, MOVE_MAX - 1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    if rcall('HGET', 'acd:call:' .. entries[i], 'kind') == 'callback' then
      rcall('ZREM', wait, entries[i])
      rcall('ZADD', held, entries[i + 1], entries[i])
    end
  end
end

-- Forgets a call. Only a waiting call can be in acd:due (an offer takes it
-- out; a requeue schedules it again).
local function finish_call(call, c)
  rcall('DEL', 'acd:call:' .. call)
  if c.state == 'offered' then rcall('ZREM', 'acd:offers', call) end
  if c.state == 'waiting' then rcall('ZREM', 'acd:due', call) end
end

-- When a waiting call's routing options change next: its sticky hold ends
-- or a widen rule of its queue starts. Scheduled in acd:due for the tick.
local function schedule(call, c, conf)
  local qenq, next_at = tonumber(c.qenq or c.enq), nil
  local function consider(t) if t and t > now and (not next_at or t < next_at) then next_at = t end end
  consider(tonumber(c.sticky_until or 0))
  consider(tonumber(c.hold_until or 0))
  for _, rule in ipairs(parse_widen(conf.widen)) do consider(qenq + rule[1]) end
  local every = tonumber(conf.announce_ms or 0)
  if every > 0 and c.kind ~= 'callback' then
    consider(tonumber(c.announced or qenq) + every)
  end
  if c.kind == 'callback' then
    consider(tonumber(c.expires or 0))
  else
    if tonumber(conf.overflow_ms or 0) > 0 and (conf.overflow or '') ~= '' then consider(qenq + tonumber(conf.overflow_ms)) end
    if tonumber(conf.max_wait_ms or 0) > 0 then consider(qenq + tonumber(conf.max_wait_ms)) end
  end
  if next_at then rcall('ZADD', 'acd:due', next_at, call) else rcall('ZREM', 'acd:due', call) end
end

-- A waiting call leaves its queue without an agent (max wait, empty queue,
-- failed or expired callback).
local function leave(call, c, reason)
  rcall('ZREM', 'acd:queue:' .. c.queue .. ':wait', call)
  if c.kind == 'callback' then rcall('ZREM', 'acd:queue:' .. c.queue .. ':held', call) end
  rcall('ZREM', 'acd:due', call)
  rcall('DEL', 'acd:call:' .. call)
  emit({ 'left', call, c.queue, int(now - tonumber(c.enq)), reason, c.kind or 'call' })
end

-- Why queue q (settings conf) takes no new call now: nil, or an error code
-- and text (closed: outside its hours; empty: join-empty refused with no
-- agent logged in; full: at its maximum length).
local function refusal(q, conf)
  if conf.open == '0' then return 'closed', 'queue ' .. q .. ' is closed' end
  if conf.join_empty == '0' and rcall('SCARD', 'acd:queue:' .. q .. ':members') == 0 then
    return 'empty', 'queue ' .. q .. ' has no agent logged in'
  end
  local max_len = tonumber(conf.max_len) or 0
  if max_len > 0 and rcall('ZCARD', 'acd:queue:' .. q .. ':wait') + rcall('ZCARD', 'acd:queue:' .. q .. ':held')
                     >= max_len then
    return 'full', 'queue ' .. q .. ' is full'
  end
  return nil
end

-- Moves a waiting call to queue to; it keeps its rank (its priority and
-- arrival), so it is not sent to the back of the new line. The target's
-- admission rules apply as to a new call (hours, join-empty, maximum
-- length): refused, the call stays where it is and false is returned.
local function overflow(call, c, to)
  local from = c.queue
  local tconf = qconf(to)
  if not tconf or refusal(to, tconf) then return false end
  rcall('ZREM', 'acd:queue:' .. from .. ':wait', call)
  c.queue, c.qenq = to, now_s
  local required = qconf(to).skills or ''
  rcall('HSET', 'acd:call:' .. call, 'queue', to, 'qenq', now, 'skills', required, 'sticky_until', 0)
  c.sticky_until = '0'
  c.skills = required
  rcall('ZADD', 'acd:queue:' .. to .. ':wait', tonumber(c.rank), call)
  emit({ 'overflowed', call, from, to, int(now - tonumber(c.enq)) })
  return true
end

-- Position and estimated wait of a waiting call: calls ahead, divided among
-- the queue's logged-in agents, times the queue's average handle time.
local function position(call, c)
  local q = c.queue
  -- Its rank in its own set, plus the calls ranked ahead in the other (a
  -- tie, arrived in the same ms, counts as ahead).
  local own, other = wait_key(c), 'acd:queue:' .. q .. ':held'
  if own == other then other = 'acd:queue:' .. q .. ':wait' end
  local pos = (rcall('ZRANK', own, call) or 0) + 1 + rcall('ZCOUNT', other, '-inf', c.rank)
  local agents = math.max(1, rcall('SCARD', 'acd:queue:' .. q .. ':members'))
  local handle = aht(q)
  if handle <= 0 then handle = 180000 end
  return pos, math.floor((pos - 1) / agents + 1) * handle
end

-- Puts an offered call back at its place (its rank keeps its arrival time)
-- and the agent in not_ready(reason).
local function withdraw_offer(call, c, reason)
  local agent = c.agent
  local a = load_agent(agent)
  rcall('ZREM', 'acd:offers', call)
  rcall('HSET', 'acd:call:' .. call, 'state', 'waiting', 'agent', '')
  c.state, c.agent = 'waiting', ''
  if c.last_agent == agent then
    -- The agent it waited for did not take it: no longer held for them.
    rcall('HSET', 'acd:call:' .. call, 'sticky_until', 0)
    c.sticky_until = '0'
  end
  rcall('ZADD', wait_key(c), c.rank, call)
  schedule(call, c, qconf(c.queue) or {})
  if a and a.state == 'reserved' and a.call == call then set_state(agent, a, 'not_ready', reason, '') end
  emit({ 'requeued', call, agent, c.queue, reason })
end

-- Queue q's ranking changed (or q is gone): its agents' ranks follow.
local function refresh_ranks(q)
  for _, agent in ipairs(rcall('SMEMBERS', 'acd:queue:' .. q .. ':members')) do
    local qs = rcall('HGET', 'acd:agent:' .. agent, 'queues')
    if qs then rcall('HSET', 'acd:agent:' .. agent, 'ranks', ranks_of(list(qs))) end
  end
end

local ops = {}

-- Logs agent (hash a) in to queues with skills, in state (ready, or
-- not_ready with reason, or on_call with call).
local function log_in(agent, a, ext, queues, skills, state, reason, call)
  local key = 'acd:agent:' .. agent
  rcall('DEL', key .. ':skills')
  for _, s in ipairs(parse_skills(skills)) do rcall('HSET', key .. ':skills', s[1], s[2]) end
  a.ranks = ranks_of(list(queues))
  rcall('HSET', key, 'ext', ext or '', 'queues', queues or '', 'calls', a.calls or 0, 'ranks', a.ranks,
             'skills', skills or '')
  a.skills = skills or ''
  rcall('SADD', 'acd:agents', agent)
  for _, q in ipairs(list(queues)) do rcall('SADD', 'acd:queue:' .. q .. ':members', agent) end
  a.ext, a.queues = ext, queues
  set_state(agent, a, state, reason, call or '')
  if state == 'ready' then route_agent(agent, a) end
end

-- login agent ext queues skills: skills "sales:5,english:2"; queues "sales,vip".
function ops.login(agent, ext, queues, skills)
  if not agent or agent == '' then return fail('bad_request', 'agent id missing') end
  local a = hgetall('acd:agent:' .. agent) or { state = 'logged_out', since = now_s }
  if a.state ~= 'logged_out' then return fail('conflict', 'agent ' .. agent .. ' is already logged in') end
  for _, q in ipairs(list(queues)) do
    if rcall('SISMEMBER', 'acd:queues', q) == 0 then return fail('not_found', 'no queue ' .. q) end
  end
  log_in(agent, a, ext, queues, skills, 'ready', 'login')
  return out
end

-- restore agent ext queues skills state reason call call_queue: an agent's
-- session (kept in PostgreSQL) put back after Redis lost its data, in the
-- state it asked for last (ready, or not_ready with its reason), or on the
-- call it answered: the call comes back as answered by the agent (the
-- gateway still holds it; its end puts the agent through wrap-up). Queues
-- that no longer exist are left out. Nothing happens to an agent already
-- logged in again.
function ops.restore(agent, ext, queues, skills, state, reason, call, call_queue, hold_ms)
  if not agent or agent == '' then return fail('bad_request', 'agent id missing') end
  local a = hgetall('acd:agent:' .. agent) or { state = 'logged_out', since = now_s }
  if a.state ~= 'logged_out' then return { { 'ok', 'logged in already' } } end
  local kept = {}
  for _, q in ipairs(list(queues)) do
    if rcall('SISMEMBER', 'acd:queues', q) == 1 then kept[#kept + 1] = q end
  end
  if state == 'on_call' then
    if call and call ~= '' and qconf(call_queue or '') and rcall('EXISTS', 'acd:call:' .. call) == 0 then
      rcall('HSET', 'acd:call:' .. call, 'queue', call_queue, 'prio', 0, 'enq', now_s, 'qenq', now_s,
                 'rank', 9 * PRIO_SPAN + now, 'skills', '', 'state', 'answered', 'agent', agent, 'offered', now_s,
                 'answered', now_s, 'last_agent', '', 'sticky_until', 0, 'customer', '', 'caller', '', 'flags', '',
                 'kind', 'call', 'attempts', 0)
      reason = ''
    else
      -- Its queue is gone, or the call came back another way (enqueued
      -- again): the agent is back, not offered calls until they ask.
      state, reason, call = 'not_ready', 'restored', ''
    end
  elseif state == 'not_ready' then
    call = ''
  else
    -- Ready again once the hold is over (the tick): its phone may still
    -- ring with an offer Redis forgot, which the gateway tells again
    -- (reoffer) or whose outcome comes meanwhile; no other call till then.
    state, reason, call = 'not_ready', 'restoring', ''
    rcall('ZADD', 'acd:restoring', string.format('%d', now + (tonumber(hold_ms) or 3000)), agent)
  end
  log_in(agent, a, ext, table.concat(kept, ','), skills, state, reason or '', call)
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

-- set_state agent state reason force: ready | not_ready | logged_out. With
-- force ("1", a supervisor), an agent whose phone is ringing is taken off
-- the offer (the call keeps its place) and moved at once.
function ops.set_state(agent, state, reason, force)
  local a = load_agent(agent)
  if not a or a.state == 'logged_out' then return fail('not_found', 'agent ' .. tostring(agent) .. ' is not logged in') end
  if state ~= 'ready' and state ~= 'not_ready' and state ~= 'logged_out' then
    return fail('bad_request', 'cannot request state ' .. tostring(state))
  end
  if force == '1' and a.state == 'reserved' and state ~= 'ready' then
    local call = a.call
    local c = hgetall('acd:call:' .. call)
    if c and c.state == 'offered' and c.agent == agent then
      withdraw_offer(call, c, 'forced')
      a = load_agent(agent)
      route_call(call)
    end
  end
  local rule = (allowed[a.state] or {})[state]
  if rule == 'after' then
    rcall('HSET', 'acd:agent:' .. agent, 'after_call', reason ~= '' and reason or 'requested')
    return { { 'ok', 'pending' } }
  end
  if not rule then return fail('conflict', 'agent ' .. agent .. ' is ' .. a.state .. ', cannot go ' .. state) end
  set_state(agent, a, state, reason, '')
  if state == 'ready' then route_agent(agent) end
  if state == 'logged_out' then
    rcall('SREM', 'acd:agents', agent)
    for _, q in ipairs(list(a.queues)) do
      rcall('SREM', 'acd:queue:' .. q .. ':members', agent)
      local conf = qconf(q)
      if conf and conf.leave_empty == '1' and rcall('SCARD', 'acd:queue:' .. q .. ':members') == 0 then
        -- Nobody left to answer: the callers are told at once, not kept
        -- waiting. Callbacks stay (nobody is on the line; they are called
        -- back when agents are in again).
        for _, call in ipairs(rcall('ZRANGE', 'acd:queue:' .. q .. ':wait', 0, -1)) do
          local c = hgetall('acd:call:' .. call)
          if not c then rcall('ZREM', 'acd:queue:' .. q .. ':wait', call)
          elseif c.kind ~= 'callback' then leave(call, c, 'empty') end
        end
      end
    end
  end
  return out
end

-- enqueue call queue prio skills customer last_agent caller flags
-- A queue outside its business hours (its "open" flag, kept current by the
-- acd from the calendar in PostgreSQL) applies its closed_action.
function ops.enqueue(call, q, prio, skills, customer, last_agent, caller, flags)
  if not call or call == '' then return fail('bad_request', 'call id missing') end
  local conf = qconf(q)
  if not conf then return fail('not_found', 'no queue ' .. tostring(q)) end
  if conf.open == '0' then
    local to = string.match(conf.closed_action or '', '^overflow:(.+)$')
    if not to or not qconf(to) or refusal(to, qconf(to)) then return fail('closed', 'queue ' .. q .. ' is closed') end
    emit({ 'overflowed', call, q, to, '0' })
    q, conf = to, qconf(to)
  end
  if flags and flags ~= '' and (conf.blacklist_queue or '') ~= '' and qconf(conf.blacklist_queue) then
    -- Flagged callers go to the queue of agents trained for them.
    emit({ 'overflowed', call, q, conf.blacklist_queue, '0' })
    q = conf.blacklist_queue
    conf = qconf(q)
  end
  -- One command says whether the call exists (counted twice) and whether
  -- calls wait in its queue (once).
  local wait = 'acd:queue:' .. q .. ':wait'
  local known = rcall('EXISTS', 'acd:call:' .. call, 'acd:call:' .. call, wait)
  if known >= 2 then return fail('conflict', 'call ' .. call .. ' is already queued') end
  local code, text = refusal(q, conf)
  if code then return fail(code, text) end
  prio = math.floor(math.max(0, math.min(9, tonumber(prio) or 0)))
  local rank = (9 - prio) * PRIO_SPAN + now
  local required = conf.skills or ''
  if skills and skills ~= '' then required = (required ~= '' and (required .. ',') or '') .. skills end
  local sticky_until = 0
  if last_agent and last_agent ~= '' and tonumber(conf.sticky_ms or 0) > 0
     and rcall('SISMEMBER', 'acd:queue:' .. q .. ':members', last_agent) == 1 then
    -- Held for the last agent only while that agent is logged in to the queue.
    sticky_until = now + tonumber(conf.sticky_ms)
  end
  local c = { queue = q, prio = int(prio), enq = now_s, qenq = now_s, rank = string.format('%d', rank),
              skills = required, state = 'waiting', agent = '', last_agent = last_agent or '',
              sticky_until = int(sticky_until), customer = customer or '', caller = caller or '',
              flags = flags or '', kind = 'call', attempts = '0', offered = '' }
  local agent, a = pick_agent(call, c, conf, true)
  if agent then
    -- Offered at once: it never waits, its place is the calls ranked ahead.
    local pos = known == 1 and rcall('ZCOUNT', wait, '-inf', '(' .. c.rank) + 1 or 1
    emit({ 'entered', call, q, int(prio), int(pos) })
    reserve(call, c, agent, a, true, false)
    emit({ 'position', call, '0', '0', conf.music or '' })
    return out
  end
  write_call(call, c)
  rcall('ZADD', wait, c.rank, call)
  local pos, ewt = position(call, c)
  emit({ 'entered', call, q, int(prio), int(pos) })
  if timed(c, conf) then schedule(call, c, conf) end
  emit({ 'position', call, int(pos), int(ewt), conf.music or '' })
  return out
end

-- An agent put back after Redis lost its data, who asked to be ready and
-- was not offered a call since (held, or ready after the hold): its phone
-- may still ring with an offer Redis forgot, whose outcome comes as for any
-- offer.
local function restored_ready(agent)
  local a = load_agent(agent)
  if a and ((a.state == 'not_ready' and a.reason == 'restoring') or (a.state == 'ready' and a.reason == 'restored')) then
    return a
  end
  return nil
end

-- reoffer call queue agent caller: after Redis lost its data, the gateway
-- tells of a caller whose agent's phone rings: the call is offered to that
-- agent again (held since the restore: not offered anything else), so its
-- answer puts the call in its own queue. The phone rings already: nothing
-- is rung again. An agent not held (logged in again, gone) leaves the caller
-- waiting in the queue like any call (the late answer is refused).
function ops.reoffer(call, q, agent, caller)
  if not call or call == '' then return fail('bad_request', 'call id missing') end
  if rcall('EXISTS', 'acd:call:' .. call) == 1 then return { { 'position', call, '0', '0', '' } } end
  local conf = qconf(q)
  if not conf then return fail('not_found', 'no queue ' .. tostring(q)) end
  local a = restored_ready(agent)
  if not a then return ops.enqueue(call, q, '0', '', '', '', caller, '') end
  local c = { queue = q, prio = '0', enq = now_s, rank = string.format('%d', 9 * PRIO_SPAN + now), state = 'offered',
              agent = agent, offered = now_s, caller = caller or '', sticky_until = '0' }
  local seq = next_seq()
  a.last_offer = seq
  set_state(agent, a, 'reserved', '', call, 'last_offer', seq)
  rcall('ZREM', 'acd:restoring', agent)
  write_call(call, c)
  rcall('ZADD', 'acd:offers', string.format('%d', now + (tonumber(conf.offer_ms) or 15000)), call)
  emit({ 'position', call, '0', '0', conf.music or '' })
  return out
end

-- answered call agent: the agent's phone answered the offer. A call Redis
-- lost while the phone rang comes back answered by the agent, in its first
-- queue (the gateway bridged it; its end puts the agent through wrap-up).
function ops.answered(call, agent)
  local c = hgetall('acd:call:' .. call)
  if not c then
    local a = restored_ready(agent)
    local q = a and list(a.queues)[1]
    if not q then return fail('not_found', 'no call ' .. tostring(call)) end
    rcall('HSET', 'acd:call:' .. call, 'queue', q, 'prio', 0, 'enq', now_s, 'qenq', now_s,
               'rank', 9 * PRIO_SPAN + now, 'skills', '', 'state', 'answered', 'agent', agent, 'offered', now_s,
               'answered', now_s, 'last_agent', '', 'sticky_until', 0, 'customer', '', 'caller', '', 'flags', '',
               'kind', 'call', 'attempts', 0)
    rcall('HINCRBY', 'acd:agent:' .. agent, 'calls', 1)
    a.calls = tostring((tonumber(a.calls) or 0) + 1)
    set_state(agent, a, 'on_call', '', call)
    emit({ 'answered', call, agent, q, '0', '1', 'call' })
    return out
  end
  local a = nil
  if c.state == 'waiting' and c.kind == 'callback' then
    -- A callback offered before Redis lost its data, put back waiting from
    -- PostgreSQL meanwhile, answered by the agent it was offered to (held
    -- since the restore): done, by that agent.
    a = restored_ready(agent)
    if not a then return fail('conflict', 'call ' .. call .. ' is not offered to ' .. tostring(agent)) end
    rcall('ZREM', wait_key(c), call)
    rcall('ZREM', 'acd:due', call)
    rcall('HSET', 'acd:call:' .. call, 'state', 'answered', 'agent', agent, 'offered', now_s, 'answered', now_s)
  elseif c.state ~= 'offered' or c.agent ~= agent then
    return fail('conflict', 'call ' .. call .. ' is not offered to ' .. tostring(agent))
  else
    rcall('ZREM', 'acd:offers', call)
    rcall('HSET', 'acd:call:' .. call, 'state', 'answered', 'answered', now)
    a = load_agent(agent)
  end
  rcall('HINCRBY', 'acd:agent:' .. agent, 'calls', 1)
  a.calls = tostring((tonumber(a.calls) or 0) + 1)
  set_state(agent, a, 'on_call', '', call)
  local sl = tonumber((qconf(c.queue) or {}).sl_ms or 20000)
  local waited = now - tonumber(c.enq)
  emit({ 'answered', call, agent, c.queue, int(waited), waited <= sl and '1' or '0', c.kind or 'call' })
  return out
end

-- Refusals that are the call's doing, not the agent's (the gateway's
-- reasons): the agent is not made not_ready for them.
--   call_gone  the gateway has no such call (its caller hung up): it leaves
--              as an abandon (a callback, never abandoned, is held as for
--              call_busy);
--   call_busy  the gateway is busy with the call already (another agent's
--              phone rings for it, or a callback's earlier try is still
--              under way, after Redis lost its data): it waits, offered to
--              nobody for the queue's offer time, for that outcome;
--   no_trunk   a callback cannot be dialled (no outbound trunk): a failed
--              try, as when the customer does not answer.
local CALL_SIDE = { call_gone = true, call_busy = true, no_trunk = true }

-- rejected call agent reason: the agent declined or could not be rung, or
-- the gateway could not offer the call (CALL_SIDE).
function ops.rejected(call, agent, reason)
  local c = hgetall('acd:call:' .. call)
  if not c then
    -- Redis lost the call while the phone rang: the agent's outcome still
    -- holds; the gateway enqueues the caller again on not_found.
    local a = restored_ready(agent)
    if a and not CALL_SIDE[reason] then set_state(agent, a, 'not_ready', reason ~= '' and reason or 'rejected', '') end
    emit({ 'error', 'not_found', 'no call ' .. tostring(call) })
    return out
  end
  if c.state ~= 'offered' or c.agent ~= agent then return fail('conflict', 'no such offer') end
  if reason == 'no_trunk' and c.kind == 'callback' then return ops.callback_failed(call, agent) end
  local gone = reason == 'call_gone' and c.kind ~= 'callback'
  if gone then
    emit({ 'abandoned', call, c.queue, int(now - tonumber(c.enq)), '0' })
  elseif not CALL_SIDE[reason] then
    withdraw_offer(call, c, reason ~= '' and reason or 'rejected')
    route_call(call)
    return out
  end
  -- The call's doing: the agent is free again at once.
  local a = load_agent(agent)
  if gone then
    finish_call(call, c)
  else
    rcall('ZREM', 'acd:offers', call)
    local hold = now + (tonumber((qconf(c.queue) or {}).offer_ms) or 15000)
    rcall('HSET', 'acd:call:' .. call, 'state', 'waiting', 'agent', '', 'hold_until', hold)
    c.state, c.agent, c.hold_until = 'waiting', '', string.format('%d', hold)
    rcall('ZADD', wait_key(c), c.rank, call)
    schedule(call, c, qconf(c.queue) or {})
    emit({ 'requeued', call, agent, c.queue, reason })
  end
  if a and a.state == 'reserved' and a.call == call then
    set_state(agent, a, 'ready', '', '')
    route_agent(agent, a)
  end
  return out
end

-- ended call: the caller or the agent hung up, whatever the call's state.
function ops.ended(call)
  local f = rcall('HMGET', 'acd:call:' .. call, 'queue', 'state', 'agent', 'enq', 'kind', 'answered')
  if not f[1] then return fail('not_found', 'no call ' .. tostring(call)) end
  local c = { queue = f[1], state = f[2] or '', agent = f[3] or '', enq = f[4] or now_s, kind = f[5] or 'call',
              answered = f[6] or nil }
  local q = c.queue
  if c.kind == 'callback' and (c.state == 'waiting' or c.state == 'offered') then
    -- The caller hangs up after asking for a callback: not an abandon. The
    -- hang-up may reach acd late, once the callback is offered: the offer
    -- stands (the gateway's own callback legs report callback_failed).
    return { { 'ok', 'callback kept' } }
  elseif c.state == 'waiting' then
    local position = (rcall('ZRANK', 'acd:queue:' .. q .. ':wait', call) or 0) + 1
    rcall('ZREM', 'acd:queue:' .. q .. ':wait', call)
    emit({ 'abandoned', call, q, int(now - tonumber(c.enq)), int(position) })
  elseif c.state == 'offered' then
    -- Hung up while the agent's phone rang: an abandon; the agent is free.
    emit({ 'abandoned', call, q, int(now - tonumber(c.enq)), '0' })
    local a = load_agent(c.agent)
    if a and a.state == 'reserved' and a.call == call then
      set_state(c.agent, a, 'ready', '', '')
      finish_call(call, c)
      route_agent(c.agent, a)
      return out
    end
  elseif c.state == 'answered' then
    local conf = qconf(q) or {}
    -- The queue's average handle time, for estimated waits.
    local held = now - tonumber(c.answered or now)
    local handle = aht(q)
    handle = handle > 0 and math.floor(handle * 0.9 + held * 0.1) or held
    rcall('HSET', 'acd:queue:' .. q, 'aht_ms', string.format('%d', handle))
    local a = load_agent(c.agent)
    if a and a.state == 'on_call' and a.call == call then
      local wrap = tonumber(conf.wrap_ms) or 0
      local after = a.after_call
      if after and after ~= '' then
        rcall('HDEL', 'acd:agent:' .. c.agent, 'after_call')
        set_state(c.agent, a, 'not_ready', after, '')
      elseif wrap > 0 then
        set_state(c.agent, a, 'wrap_up', '', call)
        rcall('ZADD', 'acd:wrapups', now + wrap, c.agent)
      else
        set_state(c.agent, a, 'ready', '', '')
        finish_call(call, c)
        route_agent(c.agent, a)
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
  for _, call in ipairs(rcall('ZRANGEBYSCORE', 'acd:offers', '-inf', now, 'LIMIT', 0, 100)) do
    local c = hgetall('acd:call:' .. call)
    if c and c.state == 'offered' then
      withdraw_offer(call, c, 'no_answer')
      route_call(call)
    else
      rcall('ZREM', 'acd:offers', call)
    end
  end
  for _, agent in ipairs(rcall('ZRANGEBYSCORE', 'acd:wrapups', '-inf', now, 'LIMIT', 0, 100)) do
    local a = load_agent(agent)
    rcall('ZREM', 'acd:wrapups', agent)
    if a and a.state == 'wrap_up' then
      set_state(agent, a, 'ready', '', '')
      route_agent(agent)
    end
  end
  for _, agent in ipairs(rcall('ZRANGEBYSCORE', 'acd:restoring', '-inf', now, 'LIMIT', 0, 100)) do
    local a = load_agent(agent)
    rcall('ZREM', 'acd:restoring', agent)
    if a and a.state == 'not_ready' and a.reason == 'restoring' then
      set_state(agent, a, 'ready', 'restored', '')
      route_agent(agent)
    end
  end
  for _, call in ipairs(rcall('ZRANGEBYSCORE', 'acd:due', '-inf', now, 'LIMIT', 0, 100)) do
    rcall('ZREM', 'acd:due', call)
    local c = hgetall('acd:call:' .. call)
    if c and c.state == 'waiting' then
      local conf = qconf(c.queue) or {}
      local in_queue = now - tonumber(c.qenq or c.enq)
      local max_wait = tonumber(conf.max_wait_ms or 0)
      if c.kind == 'callback' and tonumber(c.expires or 0) <= now then
        leave(call, c, 'callback_expired')
        c = nil
      elseif c.kind ~= 'callback' and max_wait > 0 and in_queue >= max_wait then
        if conf.max_wait_action == 'overflow' and (conf.overflow or '') ~= '' and overflow(call, c, conf.overflow) then
          route_call(call)
        else
          leave(call, c, 'timeout')
          c = nil
        end
      elseif c.kind ~= 'callback' and (conf.overflow or '') ~= '' and tonumber(conf.overflow_ms or 0) > 0
             and in_queue >= tonumber(conf.overflow_ms) then
        if overflow(call, c, conf.overflow) then route_call(call) end
      else
        route_call(call)
        local every = tonumber(conf.announce_ms or 0)
        if every > 0 and c.kind ~= 'callback' and now >= tonumber(c.announced or c.qenq or c.enq) + every then
          local fresh = hgetall('acd:call:' .. call)
          if fresh.state == 'waiting' then
            -- Time to tell the caller where they stand.
            local pos, ewt = position(call, fresh)
            rcall('HSET', 'acd:call:' .. call, 'announced', now)
            emit({ 'announce', call, fresh.queue, int(pos), int(ewt) })
          end
        end
      end
      if c then
        c = hgetall('acd:call:' .. call)
        if c and c.state == 'waiting' then schedule(call, c, qconf(c.queue) or {}) end
      end
    end
  end
  return out
end

-- queue name strategy offer_ms wrap_ms widen max_len sticky_ms skills overflow
--       overflow_ms max_wait_ms max_wait_action join_empty leave_empty closed_action
--       cb_attempts cb_retry_ms cb_expire_ms open sl_ms blacklist_queue music announce_ms
--       cb_open cb_at
-- defines or updates a queue (from the acd.queues table). cb_open: whether
-- its calling hours allow callbacks now ("0": they keep their place, but
-- are offered to nobody); "1" or none when they do; cb_at: when that was
-- found (ms), so that an instance's older verdict, arriving after a newer
-- one of another, changes nothing.
function ops.queue(...)
  for _, v in ipairs({ ... }) do
    -- The separator of the packed settings cannot be part of one.
    if string.find(v, CONF_SEP, 1, true) then return fail('bad_request', 'a queue setting holds the byte 31') end
  end
  local q, strategy, offer_ms, wrap_ms, widen, max_len, sticky_ms, skills, overflow_q,
        overflow_ms, max_wait_ms, max_wait_action, join_empty, leave_empty, closed_action,
        cb_attempts, cb_retry_ms, cb_expire_ms, open, sl_ms, blacklist_queue, music, announce_ms, cb_open,
        cb_at = ...
  cb_open = cb_open == '0' and '0' or '1'
  cb_at = tonumber(cb_at) or 0
  rcall('SADD', 'acd:queues', q)
  local lite = (strategy ~= '' and strategy or 'longest_idle') .. ' ' .. (skills or '')
  if rcall('HGET', 'acd:strategies', q) ~= lite then
    rcall('HSET', 'acd:strategies', q, lite)
    refresh_ranks(q)
  end
  rcall('HSET', 'acd:queue:' .. q, 'strategy', strategy, 'offer_ms', offer_ms, 'wrap_ms', wrap_ms,
             'widen', widen, 'max_len', max_len, 'sticky_ms', sticky_ms, 'skills', skills,
             'overflow', overflow_q or '', 'overflow_ms', overflow_ms or 0, 'max_wait_ms', max_wait_ms or 0,
             'max_wait_action', max_wait_action or 'leave', 'join_empty', join_empty or '1',
             'leave_empty', leave_empty or '0', 'closed_action', closed_action or 'reject',
             'cb_attempts', cb_attempts or 3, 'cb_retry_ms', cb_retry_ms or 300000,
             'cb_expire_ms', cb_expire_ms or 14400000, 'open', open == '0' and '0' or '1',
             'sl_ms', sl_ms or 20000, 'blacklist_queue', blacklist_queue or '', 'music', music or '',
             'announce_ms', announce_ms or 0)
  -- Not part of the packed settings, whose layout older versions running
  -- beside this one read too; read only for callbacks.
  local was = rcall('HMGET', 'acd:queue:' .. q, 'cb_open', 'cb_at')
  local newer = cb_at >= (tonumber(was[2]) or 0)
  if newer then rcall('HSET', 'acd:queue:' .. q, 'cb_open', cb_open, 'cb_at', string.format('%d', cb_at)) end
  write_conf(q)
  qforget(q)
  if newer and was[1] == '0' and cb_open == '1' then
    release_callbacks(q)   -- the offers made go out with this reply
  elseif newer and was[1] ~= '0' and cb_open == '0' then
    hold_callbacks(q)
  end
  emit({ 'ok', q })
  return out
end

-- prune names: queues not in the comma-separated list were deleted from
-- acd.queues; their waiting calls leave (queue_removed) and their keys go.
function ops.prune(names)
  local keep = {}
  for _, q in ipairs(list(names)) do keep[q] = true end
  for _, q in ipairs(rcall('SMEMBERS', 'acd:queues')) do
    if not keep[q] then
      for _, set in ipairs({ ':wait', ':held' }) do
        for _, call in ipairs(rcall('ZRANGE', 'acd:queue:' .. q .. set, 0, -1)) do
          local c = hgetall('acd:call:' .. call)
          if c then leave(call, c, 'queue_removed') end
        end
      end
      rcall('SREM', 'acd:queues', q)
      rcall('HDEL', 'acd:strategies', q)
      refresh_ranks(q)
      qforget(q)
      rcall('DEL', 'acd:queue:' .. q, 'acd:queue:' .. q .. ':conf', 'acd:queue:' .. q .. ':wait',
                 'acd:queue:' .. q .. ':held', 'acd:queue:' .. q .. ':ready',
                 'acd:queue:' .. q .. ':members')
    end
  end
  return out
end

-- open q flag: the calendar's verdict for queue q ("1" open, "0" closed).
function ops.open(q, flag)
  if not qconf(q) then return fail('not_found', 'no queue ' .. tostring(q)) end
  rcall('HSET', 'acd:queue:' .. q, 'open', flag == '0' and '0' or '1')
  write_conf(q)
  qforget(q)
  return { { 'ok', q } }
end

-- status: what operators see, read in one atomic step:
--   {"queue_status", queue, waiting, ready, longest_wait_ms} per queue and
--   {"agent_status", agent, state, since, reason, call, queues, ext, skills} per agent.
-- The longest wait is the oldest arrival over the priorities (the head of
-- the wait set is the best ranked call, not always the oldest).
function ops.status()
  local queues = rcall('SMEMBERS', 'acd:queues')
  table.sort(queues)
  for _, q in ipairs(queues) do
    local wait, held = 'acd:queue:' .. q .. ':wait', 'acd:queue:' .. q .. ':held'
    local in_wait, callbacks = rcall('ZCARD', wait), rcall('ZCARD', held)
    local waiting, longest = in_wait + callbacks, 0
    for _, set in ipairs(waiting > 0 and { wait, held } or {}) do
      for p = 0, 9 do
        local head = rcall('ZRANGEBYSCORE', set, p * PRIO_SPAN, '(' .. ((p + 1) * PRIO_SPAN), 'WITHSCORES', 'LIMIT', 0, 1)
        if head[2] then longest = math.max(longest, now - (tonumber(head[2]) - p * PRIO_SPAN)) end
      end
    end
    if in_wait > 0 then
      for _, call in ipairs(rcall('ZRANGE', wait, 0, -1)) do
        if rcall('HGET', 'acd:call:' .. call, 'kind') == 'callback' then callbacks = callbacks + 1 end
      end
    end
    emit({ 'queue_status', q, tostring(waiting), tostring(rcall('ZCARD', 'acd:queue:' .. q .. ':ready')),
           tostring(longest), tostring(callbacks), may_call_back(q) and '0' or '1' })
  end
  local agents = rcall('SMEMBERS', 'acd:agents')
  table.sort(agents)
  for _, agent in ipairs(agents) do
    local f = rcall('HMGET', 'acd:agent:' .. agent, 'state', 'since', 'reason', 'call', 'queues', 'ext')
    local sk = rcall('HGETALL', 'acd:agent:' .. agent .. ':skills')
    local skills = {}
    for i = 1, #sk, 2 do skills[#skills + 1] = sk[i] .. ':' .. sk[i + 1] end
    table.sort(skills)
    emit({ 'agent_status', agent, f[1] or 'logged_out', f[2] or '0', f[3] or '', f[4] or '', f[5] or '', f[6] or '',
           table.concat(skills, ',') })
  end
  return out
end

-- cancel call: an operator removes a waiting call or callback.
function ops.cancel(call)
  local c = hgetall('acd:call:' .. call)
  if not c then return fail('not_found', 'no call ' .. tostring(call)) end
  if c.state ~= 'waiting' then return fail('conflict', 'call ' .. call .. ' is ' .. c.state) end
  leave(call, c, 'cancelled')
  return out
end

-- callback call number: the caller asked to be called back and hangs up;
-- the call keeps its place in line as a callback (until the queue's
-- cb_expire_ms). When it reaches an agent the offer says "callback" and the
-- gateway calls the number.
function ops.callback(call, number)
  local c = hgetall('acd:call:' .. call)
  if not c then return fail('not_found', 'no call ' .. tostring(call)) end
  if c.state ~= 'waiting' then return fail('conflict', 'call ' .. call .. ' is not waiting') end
  if not number or not string.match(number, '^%+?%d+$') then return fail('bad_request', 'invalid number') end
  local expires = now + (tonumber((qconf(c.queue) or {}).cb_expire_ms) or 14400000)
  rcall('HSET', 'acd:call:' .. call, 'kind', 'callback', 'number', number, 'expires', expires)
  c.kind, c.number, c.expires = 'callback', number, tostring(expires)
  if not may_call_back(c.queue) then
    rcall('ZREM', 'acd:queue:' .. c.queue .. ':wait', call)
    rcall('ZADD', wait_key(c), c.rank, call)
  end
  local pos = position(call, c)
  -- With what puts it back in its place should Redis lose its data (acd
  -- keeps callbacks in PostgreSQL: the caller is gone, nobody else holds
  -- the request).
  emit({ 'callback', call, c.queue, number, int(pos), c.prio or '0', c.rank, c.enq, c.expires, c.customer or '',
         c.caller or '', c.skills or '', c.qenq or c.enq })
  schedule(call, c, qconf(c.queue) or {})
  return out
end

-- restore_callback call queue number prio rank enq expires attempts
--                  hold_until customer caller skills qenq
-- After Redis lost its data: a callback kept in PostgreSQL comes back in
-- its place (its first rank), waiting, unless it is known (it came back
-- already) or expired meanwhile.
function ops.restore_callback(call, q, number, prio, rank, enq, expires, attempts, hold_until, customer, caller,
                              skills, qenq)
  if not call or call == '' then return fail('bad_request', 'call id missing') end
  local kind = rcall('HGET', 'acd:call:' .. call, 'kind')
  if kind then
    -- Back already; or its customer's call came back another way (the
    -- gateway held it: answered), and the callback is done.
    if kind ~= 'callback' then emit({ 'callback_done', call }) end
    emit({ 'ok', 'known' })
    return out
  end
  local conf = qconf(q)
  if not conf or not tonumber(rank) or not tonumber(enq) or not tonumber(expires) then
    -- Its queue is gone (or the row is unreadable): it leaves, and is forgotten.
    emit({ 'left', call, q, '0', 'queue_removed', 'callback' })
    return out
  end
  -- When it entered this queue (an overflow), for the queue's widen rules.
  if (tonumber(qenq) or 0) <= 0 then qenq = enq end
  local c = { queue = q, prio = prio, enq = enq, qenq = qenq, rank = rank, state = 'waiting', kind = 'callback',
              number = number, expires = expires, attempts = attempts, hold_until = hold_until,
              customer = customer, caller = caller, sticky_until = '0', skills = skills or '' }
  if tonumber(expires) <= now then
    emit({ 'left', call, q, int(now - tonumber(enq)), 'callback_expired', 'callback' })
    return out
  end
  rcall('HSET', 'acd:call:' .. call, 'queue', q, 'prio', prio, 'enq', enq, 'rank', rank, 'state', 'waiting',
             'skills', c.skills, 'kind', 'callback', 'number', number, 'expires', expires, 'attempts', attempts,
             'hold_until', hold_until, 'customer', customer or '', 'caller', caller or '', 'qenq', qenq)
  rcall('ZADD', wait_key(c), rank, call)
  schedule(call, c, conf)
  route_call(call, c)   -- an agent ready already (logged in meanwhile) takes it
  emit({ 'ok', 'restored' })
  return out
end

-- callback_failed call agent: the customer did not answer the callback. The
-- agent is free again; the callback keeps its place and is tried again after
-- the queue's cb_retry_ms, until cb_attempts tries.
function ops.callback_failed(call, agent)
  local c = hgetall('acd:call:' .. call)
  -- Waiting: offered before Redis lost its data (put back from PostgreSQL),
  -- to an agent held since the restore; the try counts all the same.
  local restored = c and c.state == 'waiting' and c.kind == 'callback' and restored_ready(agent)
  if not c or (not restored and (c.state ~= 'offered' or c.agent ~= agent or c.kind ~= 'callback')) then
    return fail('conflict', 'no such callback offer')
  end
  local a = load_agent(agent)
  rcall('ZREM', 'acd:offers', call)
  local attempts = tonumber(c.attempts or 0) + 1
  if a and a.state == 'reserved' and a.call == call then set_state(agent, a, 'ready', '', '') end
  local conf = qconf(c.queue) or {}
  if attempts >= (tonumber(conf.cb_attempts) or 3) then
    if restored then rcall('ZREM', wait_key(c), call) end
    rcall('DEL', 'acd:call:' .. call)
    rcall('ZREM', 'acd:due', call)
    emit({ 'left', call, c.queue, int(now - tonumber(c.enq)), 'callback_failed', 'callback' })
  else
    local hold = now + (tonumber(conf.cb_retry_ms) or 300000)
    rcall('HSET', 'acd:call:' .. call, 'state', 'waiting', 'agent', '', 'attempts', attempts, 'hold_until', hold)
    c.hold_until, c.state = string.format('%d', hold), 'waiting'
    rcall('ZADD', wait_key(c), c.rank, call)
    schedule(call, c, qconf(c.queue) or {})
    emit({ 'requeued', call, agent, c.queue, 'callback_no_answer', c.hold_until, int(attempts) })
  end
  route_agent(agent)
  return out
end

-- The entry: a batch of operations, run one after the other in
-- one atomic call. ARGV: the number of operations, the batch's id ("" for
-- none), then for each operation its field count k and k fields: request id
-- ("" for none), operation, time, args. Returns, as one JSON text, the
-- list of the operations' results: each a list of actions.
--
-- Nothing runs twice:
-- * A batch sent again (its reply was lost on the way back, so its actions
--   were never carried out) gets its first results back, kept in
--   acd:req:<period> under "#<id>" (the period of its first operation's
--   time, which a batch sent again keeps); only read-only operations
--   (status) run again.
-- * An operation whose request id ran already (a retry of the request, maybe
--   through another acd instance; acd marks retries "?id", the only ones
--   looked up) gets its first run's actions back, led by
--   {"replayed"}: the requester gets the same reply and the agent is rung
--   again (the gateway takes an offer already ringing as done), but no
--   event is published twice. acd:req:<10 s period> maps request ids to
--   "<batch id> <index>", kept 10 to 20 s: longer than a request's deadline
--   and its retries.
local READ_ONLY = { status = true }
-- The results of batch id of period b as first run (false when no longer
-- kept), read once. older: also look where acd versions before the
-- period hashes kept them (acd:batch:<id>), for a retry of a request one
-- of them ran during an upgrade.
local batches = {}
local function kept_batch(id, b, older)
  local key = b .. ' ' .. id
  if batches[key] == nil then
    local text = rcall('HGET', 'acd:req:' .. b, '#' .. id)
    if not text and older then text = rcall('GET', 'acd:batch:' .. id) end
    batches[key] = text and cjson.decode(text) or false
  end
  return batches[key]
end
-- A request id as a field of acd:req (batches are under "#<id>").
local function rid_field(rid)
  return string.byte(rid) == 35 and '#' .. rid or rid
end

local function run_batch(ARGV)
  bind_standard()
  -- What one call read from Redis is not kept for the next, but the
  -- queues' settings while none changed.
  batches, seq_at = {}, nil
  qcheck()
  if memo_n > MEMO_MAX then
    memo_list, memo_skills, memo_widen, memo_levels, memo_ranks, memo_conf, memo_n = {}, {}, {}, {}, {}, {}, 0
  end
  local nops = tonumber(ARGV[1]) or 0
  local batch_id = ARGV[2] or ''
  local batch, rids = {}, {}
  local at = 3
  for n = 1, nops do
    local k = tonumber(ARGV[at])
    local rid, name, t = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
    if string.byte(rid) == 63 then   -- "?id": a retry, maybe run already
      rid = string.sub(rid, 2)
      if not READ_ONLY[name] then rids[#rids + 1] = rid end
    end
    -- Its arguments stay in ARGV, from first to last.
    batch[n] = { rid = rid, name = name, now = tonumber(t), args_now = t, first = at + 4, last = at + k }
    at = at + k + 1
  end

  local done = {}   -- request id -> its first actions (this batch's or an earlier one's)
  local bucket = math.floor((batch[1] and batch[1].now or 0) / 10000)
  local first = batch_id ~= '' and kept_batch(batch_id, bucket)
  if #rids > 0 and not first then
    local fields = {}
    for j = 1, #rids do fields[j] = rid_field(rids[j]) end
    for _, b in ipairs({ bucket, bucket - 1 }) do
      local got = rcall('HMGET', 'acd:req:' .. b, unpack(fields))
      for j = 1, #rids do
        local id, index = string.match(got[j] or '', '^(%S+) (%d+)$')
        local res = id and not done[rids[j]] and kept_batch(id, b, true)
        if res and res[tonumber(index)] ~= 0 then done[rids[j]] = res[tonumber(index)] end
      end
    end
  end

  local results, stored, store = {}, {}, {}
  local changed, read_only = false, false
  for n, o in ipairs(batch) do
    local fn = ops[o.name]
    stored[n] = 0
    if first and first[n] ~= 0 then
      results[n] = first[n]
    elseif o.rid ~= '' and done[o.rid] then
      local again = { { 'replayed' } }
      for _, action in ipairs(done[o.rid]) do again[#again + 1] = action end
      results[n] = again
    elseif not fn then
      results[n] = fail('bad_request', 'unknown operation ' .. tostring(o.name))
    elseif not o.now then
      results[n] = fail('bad_request', 'time missing')
    else
      -- Room for the actions most operations emit, made at once (a table
      -- grown one element at a time is reallocated at each power of two).
      now, now_s, out = o.now, o.args_now, { nil, nil, nil, nil }
      local ok, res = pcall(fn, unpack(ARGV, o.first, o.last))
      read_only = read_only or READ_ONLY[o.name] or false
      if ok then
        results[n] = res
        if not READ_ONLY[o.name] then
          stored[n] = res
          changed = true
          if o.rid ~= '' then
            done[o.rid] = res
            store[#store + 1] = rid_field(o.rid)
            store[#store + 1] = batch_id .. ' ' .. int(n)
          end
        end
      else
        -- A failed operation (a bug, Redis refusing a command) may have
        -- written part of its change, as a failed script would; the others
        -- still run. Not kept: a retry may succeed.
        results[n] = { { 'error', 'internal', type(res) == 'table' and tostring(res.err) or tostring(res) } }
      end
    end
  end
  if seq_at then rcall('SET', 'acd:seq', string.format('%d', seq_at)) end
  -- The reply is one JSON text (cheaper for Redis than nested replies), and
  -- the same text is what a batch sent again gets back.
  local text = cjson.encode(results)
  if changed and batch_id ~= '' and not first then
    store[#store + 1] = '#' .. batch_id
    store[#store + 1] = read_only and cjson.encode(stored) or text
    local key = 'acd:req:' .. bucket
    rcall('HSET', key, unpack(store))
    rcall('EXPIRE', key, 40)
    -- A period over 20 s old is needed no more: freed off the main thread
    -- (a busy period holds many ids and results; freeing it at its expiry
    -- would stall Redis).
    rcall('UNLINK', 'acd:req:' .. (bucket - 3))
  end
  return text
end

-- The library's one function (see cc_redis_function in libcommon):
-- FCALL <FUNCTION_NAME> 0 <the batch's arguments>.
redis.register_function(FUNCTION_NAME, function(_, args) return run_batch(args) end)
