-- Admits requests of one tenant against its limits, each all or nothing,
-- in order (a later one sees the earlier ones' charges):
-- rate_limit_per_sec as a GCRA (a burst of up to `burst` messages, then
-- one every 1/rate s) and daily_quota per UTC day.
--
-- KEYS[1]  the tenant's GCRA state: its theoretical arrival time, in µs
-- KEYS[2]  the tenant's day count: hash {d = UTC day number, n = messages}
-- ARGV[1]  rate per second (0: no rate limit); ARGV[2] burst, in messages
-- ARGV[3]  daily quota (0: none)
-- ARGV[4]  the day's count to start from when KEYS[2] is missing ('' to
--          ask for it: the reply is then {-1, day})
-- ARGV[5]  now in µs ('' for the server's clock; tests pass their own)
-- ARGV[6…] each request's message count
--
-- Reply: {day, then per request: outcome, wait_ms, remaining} with
-- outcome 0 admitted, 1 over the rate (wait_ms until it would fit),
-- 2 over the daily quota (remaining = what is left today, wait_ms until
-- the next UTC day), 3 more messages than the burst allows at once.
local rate, burst, quota = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local day_us = 86400000000
local day = math.floor(now / day_us)

local used = 0
if quota > 0 then
  local stored = redis.call('HMGET', KEYS[2], 'd', 'n')
  if not stored[1] then
    if ARGV[4] == '' then return {-1, day} end
    used = tonumber(ARGV[4])
  elseif tonumber(stored[1]) == day then
    used = tonumber(stored[2] or '0')
  end
end

local interval, tolerance, tat = 0, 0, now
if rate > 0 then
  interval = 1000000 / rate
  tolerance = burst * interval
  tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '') or now, now)
end

local reply = {day}
local admitted = 0
for i = 6, #ARGV do
  local n = tonumber(ARGV[i])
  local outcome, wait_ms, remaining = 0, 0, 0
  if rate > 0 and n > burst then
    outcome = 3
  elseif quota > 0 and used + n > quota then
    outcome, remaining = 2, math.max(quota - used, 0)
    wait_ms = math.ceil(((day + 1) * day_us - now) / 1000)
  elseif rate > 0 and tat + n * interval - tolerance > now then
    outcome = 1
    wait_ms = math.ceil((tat + n * interval - tolerance - now) / 1000)
  else
    tat = tat + n * interval
    used = used + n
    admitted = admitted + n
  end
  reply[#reply + 1] = outcome
  reply[#reply + 1] = wait_ms
  reply[#reply + 1] = remaining
end

if rate > 0 and admitted > 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', tat),
    'PX', math.ceil((tat - now) / 1000) + 1000)
end
if quota > 0 then
  redis.call('HSET', KEYS[2], 'd', string.format('%d', day), 'n', string.format('%.0f', used))
  redis.call('PEXPIRE', KEYS[2], 2 * 86400000)
end
return reply
