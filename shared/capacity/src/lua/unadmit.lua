-- Gives back what admit.lua charged for messages that were not accepted
-- after all (the broker did not confirm them, or the request turned out
-- to repeat an earlier one's idempotency keys).
--
-- KEYS as in admit.lua
-- ARGV[1]  rate per second (0: none); ARGV[2] messages to give back
-- ARGV[3]  the UTC day number admit.lua charged them to
-- ARGV[4]  now in µs ('' for the server's clock)
local rate, n, day = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if rate > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '')
  if tat and tat > now then
    tat = math.max(tat - n * 1000000 / rate, now)
    redis.call('SET', KEYS[1], string.format('%.0f', tat),
      'PX', math.ceil((tat - now) / 1000) + 1000)
  end
end
local stored = redis.call('HMGET', KEYS[2], 'd', 'n')
if stored[1] and tonumber(stored[1]) == day then
  local used = math.max(tonumber(stored[2] or '0') - n, 0)
  redis.call('HSET', KEYS[2], 'n', string.format('%.0f', used))
end
return 1
