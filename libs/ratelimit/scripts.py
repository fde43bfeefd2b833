"""The Lua scripts of the limiters: each runs atomically on the Redis server, on the server's clock.

They mirror window.py (the same rule: every run of limit+1 sends spans at least the window). Numbers
passed back to Redis are formatted with %d: Lua 5.1's default number-to-string keeps only 14 digits.
"""

from __future__ import annotations

from typing import Final

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local function int(x) return string.format('%d', x) end
"""

# KEYS: epoch, hold, account slots, recipient last.  ARGV: delivery id, limit, window ms, recipient gap ms.
# Returns {slot ms, now ms, loss detected (0/1), reason: 0 now, 1 hold, 2 recipient, 3 account, 4 existing}.
PLAN: Final = (
    _PRELUDE
    + """
local limit, window, gap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local lost = 0
if redis.call('GET', KEYS[1]) ~= run_id then
  -- First use, flush, restart or failover: what was planned before is unknown, so nothing is planned
  -- until one whole window has passed since now.
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
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', int(now - window))
local raw = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. int(not_before - window), '+inf', 'WITHSCORES')
local slots = {}
for i = 2, #raw, 2 do slots[#slots + 1] = tonumber(raw[i]) end
local function fits(c)
  local n, k = #slots, 0
  while k < n and slots[k + 1] <= c do k = k + 1 end
  local function at(i)
    if i <= k then return slots[i] elseif i == k + 1 then return c else return slots[i - 1] end
  end
  for first = math.max(1, k + 1 - limit), k + 1 do
    if first + limit <= n + 1 and at(first + limit) - at(first) < window then return false end
  end
  return true
end
local slot = not_before
if not fits(slot) then
  reason = 3
  for i = 1, #slots do
    local c = slots[i] + window
    if c > not_before and fits(c) then slot = c break end
  end
  if slot == not_before then slot = slots[#slots] + window end
end
redis.call('ZADD', KEYS[3], int(slot), ARGV[1])
local newest = tonumber(redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')[2])
redis.call('PEXPIRE', KEYS[3], int(newest - now + window))
redis.call('SET', KEYS[4], int(slot), 'PX', int(slot - now + gap + 1))
return {slot, now, lost, reason}
"""
)

# KEYS: marker, sent, recipient last.  ARGV: token, limit, window ms, recipient gap ms, horizon ms.
# Returns {1, now, 0} (recorded: send now), {0, now, retry at ms}, or {-1, now, 0} (load the history first).
CHECK: Final = (
    _PRELUDE
    + """
local limit, window, gap, horizon = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('GET', KEYS[1]) ~= run_id then return {-1, now, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now - window))
local count = redis.call('ZCARD', KEYS[2])
local retry = 0
if count >= limit then
  local oldest = redis.call('ZRANGE', KEYS[2], count - limit, count - limit, 'WITHSCORES')
  retry = tonumber(oldest[2]) + window
end
local last = redis.call('GET', KEYS[3])
if last and tonumber(last) + gap > now then retry = math.max(retry, tonumber(last) + gap) end
if retry > now then return {0, now, retry} end
redis.call('ZADD', KEYS[2], int(now), ARGV[1])
redis.call('PEXPIRE', KEYS[2], int(window))
redis.call('SET', KEYS[3], int(now), 'PX', int(gap + 1))
redis.call('PEXPIRE', KEYS[1], int(horizon))
return {1, now, 0}
"""
)

# KEYS: marker, sent, then one recipient key per recipient.  ARGV: window, gap, horizon, n, then n pairs
# (token, time), then one time per recipient key (the fan's last send).  Returns 1 loaded, 0 already loaded.
LOAD: Final = (
    _PRELUDE
    + """
local window, gap, horizon, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('GET', KEYS[1]) == run_id then return 0 end
redis.call('DEL', KEYS[2])
for i = 0, n - 1 do
  redis.call('ZADD', KEYS[2], ARGV[6 + 2 * i], ARGV[5 + 2 * i])
end
if n > 0 then redis.call('PEXPIRE', KEYS[2], int(window)) end
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
