-- Reads what scoring needs of one provider in one round trip: the units
-- used in each window, the live concurrency leases, and the statistics.
--
-- KEYS[1]  key prefix of the provider (as in reserve.lua)
-- ARGV[1]  n, then n pairs (window_ms, bucket_ms)
--
-- Returns {now, used_1 .. used_n, leases, ok, lat, consec, open_until}
-- (the statistics as strings, "" when never observed).
local prefix = KEYS[1]
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
for i = 0, n - 1 do
  local win = tonumber(ARGV[2 + i * 2])
  local size = tonumber(ARGV[3 + i * 2])
  local current = math.floor(now / size)
  local span = math.floor(win / size)
  local keys = {}
  for b = current - span, current do
    keys[#keys + 1] = prefix .. ':' .. win .. ':' .. b
  end
  local used = 0
  for _, v in ipairs(redis.call('MGET', unpack(keys))) do
    if v then used = used + tonumber(v) end
  end
  out[#out + 1] = used
end
out[#out + 1] = redis.call('ZCOUNT', prefix .. ':leases', now, '+inf')
local f = redis.call('HMGET', prefix .. ':stats', 'ok', 'lat', 'consec', 'open_until')
for i = 1, 4 do
  out[#out + 1] = f[i] or ''
end
return out
