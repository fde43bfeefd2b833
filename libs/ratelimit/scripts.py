"""The Lua scripts of the limiters: each runs atomically on the Redis server, on the server's clock.

They mirror window.py (the same rule: every run of limit+1 sends spans at least the window, for the
account's window and, when set, its hourly cap). Numbers passed back to Redis are formatted with %d: Lua
5.1's default number-to-string keeps only 14 digits.
"""

from __future__ import annotations

from typing import Final

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local function int(x) return string.format('%d', x) end
"""

# KEYS: epoch, hold, account slots, recipient last.
# ARGV: plan member (constants.plan_member), limit, window ms, recipient gap ms, hourly limit (0: no cap),
# hour ms, urgent (1/0), the account's recipient-key prefix, the preemption margin ms.
# Returns {slot ms, now ms, loss detected (0/1), reason: 0 now, 1 hold, 2 recipient, 3 account (the window),
# 4 existing, 5 account_hour (the hourly cap)}, then for each bulk slot an urgent one displaced (nearest
# first): its member, its new slot ms. The same rule as window.make_room and MemoryPlanner.
PLAN: Final = (
    _PRELUDE
    + """
local limit, window, gap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local hourly, hour = tonumber(ARGV[5]), tonumber(ARGV[6])
local urgent, rprefix, margin = ARGV[7] == '1', ARGV[8], tonumber(ARGV[9])
-- The account's windows as {limit, window, reason}, in the order of Limits.account_windows.
local rules = {{limit, window, 3}}
if hourly > 0 then rules[2] = {hourly, hour, 5} end
local span = 0
for _, r in ipairs(rules) do span = math.max(span, r[2]) end
local lost = 0
if redis.call('GET', KEYS[1]) ~= run_id then
  -- First use, flush, restart or failover: what was planned before is unknown, so nothing is planned
  -- until one whole window has passed since now. Not a whole hour: the of-sender's last check, rebuilt
  -- from the durable record an hour deep, holds back a send over the hourly cap.
  redis.call('SET', KEYS[1], run_id)
  redis.call('SET', KEYS[2], int(now + window), 'PX', int(window))
  lost = 1
end
local existing = redis.call('ZSCORE', KEYS[3], ARGV[1])
if existing then return {tonumber(existing), now, lost, 4} end
local not_before, reason = now, 0
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > not_before then not_before, reason = hold, 1 end
local last = redis.call('GET', KEYS[4])
if last and tonumber(last) + gap > not_before then not_before, reason = tonumber(last) + gap, 2 end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', int(now - span))
local raw = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')  -- all within a span of now, sorted
local slots, members = {}, {}
for i = 1, #raw, 2 do members[#members + 1] = raw[i]; slots[#slots + 1] = tonumber(raw[i + 1]) end
local function fits(list, c, limit, window)
  local n, lo, hi = #list, 0, #list
  while lo < hi do  -- k: how many slots are at or before c
    local mid = math.floor((lo + hi + 1) / 2)
    if list[mid] <= c then lo = mid else hi = mid - 1 end
  end
  local k = lo
  local function at(i)
    if i <= k then return list[i] elseif i == k + 1 then return c else return list[i - 1] end
  end
  for first = math.max(1, k + 1 - limit), k + 1 do
    if first + limit <= n + 1 and at(first + limit) - at(first) < window then return false end
  end
  return true
end
local function fits_all(list, c)
  for _, r in ipairs(rules) do
    if not fits(list, c, r[1], r[2]) then return false end
  end
  return true
end
local function earliest(list, t, limit, window)
  if fits(list, t, limit, window) then return t end
  for i = 1, #list do
    local c = list[i] + window
    if c > t and fits(list, c, limit, window) then return c end
  end
  return list[#list] + window
end
-- Move to each window's earliest slot until all agree: that is the earliest slot fitting every window.
local function plan(list, t)
  local slot, pushed, moved = t, 0, true
  while moved do
    moved = false
    for i, r in ipairs(rules) do
      local later = earliest(list, slot, r[1], r[2])
      if later > slot then slot, moved, pushed = later, true, math.max(pushed, i) end
    end
  end
  return slot, pushed
end
local function insert(list, v)
  local i = #list + 1
  while i > 1 and list[i - 1] > v do list[i] = list[i - 1]; i = i - 1 end
  list[i] = v
end
local function remove(list, v)
  for i = 1, #list do
    if list[i] == v then table.remove(list, i); return end
  end
end
local function recipient_of(member) return string.match(member, '^[^|]*|[ub]|[^|]*|(.*)$') end
local slot, pushed
local bulk, displaced = {}, {}
if urgent then
  -- Bulk slots past the margin may give way; every other slot stays (window.make_room).
  local fixed = {}
  for i = 1, #slots do
    if slots[i] > now + margin and string.match(members[i], '^[^|]*|([ub])|') == 'b' then
      bulk[#bulk + 1] = {members[i], slots[i]}
    else
      fixed[#fixed + 1] = slots[i]
    end
  end
  local stays, checked = {}, {}
  -- Its fan's last slot (moved later, it never passes the fan's next message), not the urgent one's fan.
  local function movable(i)
    if checked[i] == nil then
      local key = rprefix .. recipient_of(bulk[i][1])
      local fan_last = redis.call('GET', key)
      checked[i] = key ~= KEYS[4] and fan_last ~= false and tonumber(fan_last) == bulk[i][2]
    end
    return checked[i]
  end
  while true do
    slot, pushed = plan(fixed, not_before)
    local others, order = {}, {}
    for _, s in ipairs(fixed) do others[#others + 1] = s end
    for i = 1, #bulk do
      if not stays[i] then others[#others + 1] = bulk[i][2]; order[#order + 1] = i end
    end
    table.sort(others)
    table.sort(order, function(a, b)
      local da, db = math.abs(bulk[a][2] - slot), math.abs(bulk[b][2] - slot)
      if da ~= db then return da < db end
      if bulk[a][2] ~= bulk[b][2] then return bulk[a][2] > bulk[b][2] end
      return a < b
    end)
    local now_displaced, blocked = {}, nil
    for _, i in ipairs(order) do
      if fits_all(others, slot) then break end
      if not movable(i) then blocked = i; break end
      remove(others, bulk[i][2])
      now_displaced[#now_displaced + 1] = i
    end
    if blocked == nil then displaced = now_displaced; break end
    stays[blocked] = true
    insert(fixed, bulk[blocked][2])
  end
  for _, i in ipairs(displaced) do remove(slots, bulk[i][2]) end
else
  slot, pushed = plan(slots, not_before)
end
if pushed > 0 then reason = rules[pushed][3] end
redis.call('ZADD', KEYS[3], int(slot), ARGV[1])
redis.call('SET', KEYS[4], int(slot), 'PX', int(slot - now + gap + 1))
insert(slots, slot)
local out = {slot, now, lost, reason}
for _, i in ipairs(displaced) do
  local member, moved = bulk[i][1], plan(slots, bulk[i][2])
  insert(slots, moved)
  redis.call('ZADD', KEYS[3], int(moved), member)
  redis.call('SET', rprefix .. recipient_of(member), int(moved), 'PX', int(moved - now + gap + 1))
  out[#out + 1] = member
  out[#out + 1] = moved
end
local newest = tonumber(redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[3], int(newest - now + span))
return out
"""
)

# KEYS: marker, sent, recipient last.
# ARGV: token, limit, window ms, recipient gap ms, horizon ms, hourly limit (0: no cap), hour ms.
# Returns {1, now, 0} (recorded: send now), {0, now, retry at ms}, or {-1, now, 0} (load the history first).
CHECK: Final = (
    _PRELUDE
    + """
local limit, window, gap, horizon = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local hourly, hour = tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('GET', KEYS[1]) ~= run_id then return {-1, now, 0} end
local span = window
if hourly > 0 then span = math.max(window, hour) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now - span))
-- When one more send fits `lim` per `win`: once the lim-th newest send in the window has left it (0: now).
local function free_at(lim, win)
  local nth = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', '(' .. int(now - win), 'WITHSCORES', 'LIMIT', lim - 1, 1)
  if #nth == 0 then return 0 end
  return tonumber(nth[2]) + win
end
local retry = free_at(limit, window)
if hourly > 0 then retry = math.max(retry, free_at(hourly, hour)) end
local last = redis.call('GET', KEYS[3])
if last and tonumber(last) + gap > now then retry = math.max(retry, tonumber(last) + gap) end
if retry > now then return {0, now, retry} end
redis.call('ZADD', KEYS[2], int(now), ARGV[1])
redis.call('PEXPIRE', KEYS[2], int(span))
redis.call('SET', KEYS[3], int(now), 'PX', int(gap + 1))
redis.call('PEXPIRE', KEYS[1], int(horizon))
return {1, now, 0}
"""
)

# KEYS: marker, sent, then one recipient key per recipient.  ARGV: account span (the widest window), gap,
# horizon, n, then n pairs (token, time), then one time per recipient key (the fan's last send).
# Returns 1 loaded, 0 already loaded.
LOAD: Final = (
    _PRELUDE
    + """
local span, gap, horizon, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('GET', KEYS[1]) == run_id then return 0 end
redis.call('DEL', KEYS[2])
for i = 0, n - 1 do
  redis.call('ZADD', KEYS[2], ARGV[6 + 2 * i], ARGV[5 + 2 * i])
end
if n > 0 then redis.call('PEXPIRE', KEYS[2], int(span)) end
for j = 3, #KEYS do
  local sent = tonumber(ARGV[5 + 2 * n + (j - 3)])
  local ttl = sent + gap - now
  local current = redis.call('GET', KEYS[j])
  if ttl > 0 and (not current or tonumber(current) < sent) then
    redis.call('SET', KEYS[j], int(sent), 'PX', int(ttl))
  end
end
redis.call('SET', KEYS[1], run_id, 'PX', int(horizon))
return 1
"""
)

# KEYS: the bucket.  ARGV: rate (tokens per second), burst (the bucket's size), cost (tokens this call takes).
# The bucket is a hash {tokens, at ms}; a missing one is full. Returns {1, 0} taken, or {0, wait ms} refused
# (nothing taken; the wait is until `cost` tokens are back). Tokens are kept as a string with 6 decimals:
# tostring() would round them to 14 digits, and an integer-only format would lose the refill's fractions.
TAKE_TOKENS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if not tokens or not at then tokens, at = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
if tokens < cost then
  return {0, math.ceil((cost - tokens) * 1000 / rate)}
end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%d', now))
-- Gone once it would be full again: an idle user costs no memory.
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.ceil((burst - tokens) * 1000 / rate) + 1000))
return {1, 0}
"""
