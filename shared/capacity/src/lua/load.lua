-- Reads what scoring needs of one provider in one round trip: the units
-- used in each window, the live concurrency leases, and the statistics.
--
-- KEYS[1]  key prefix of the provider (as in reserve.lua)
-- ARGV[1]  n, then n pairs (window_ms, bucket_ms)
--
-- Returns {now, used_1 .. used_n, leases, ok, lat, consec, open_until,
-- admitted_rate} (the statistics as strings, "" when never observed; the
-- admitted rate "" when the provider is not throttled, see throttle.lua). Read only: a
-- running sum whose oldest buckets left the span is corrected here, and
-- saved by the next reservation.
local prefix = KEYS[1]
local key = prefix .. ':w'
local n = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
local fields = {}
for i = 0, n - 1 do
  fields[#fields + 1] = ARGV[2 + i * 2] .. ':s'
  fields[#fields + 1] = ARGV[2 + i * 2] .. ':t'
end
local v = {}
if n > 0 then v = redis.call('HMGET', key, unpack(fields)) end
for i = 0, n - 1 do
  local win = tonumber(ARGV[2 + i * 2])
  local size = tonumber(ARGV[3 + i * 2])
  local span = math.floor(win / size)
  local first = math.floor(now / size) - span
  local sum = tonumber(v[i * 2 + 1] or '0')
  local tail = tonumber(v[i * 2 + 2] or first)
  if tail < first then
    if tail + span < first then
      sum = 0
    else
      local old = {}
      for b = tail, first - 1 do
        old[#old + 1] = string.format('%d:%d', win, b)
      end
      local ov = redis.call('HMGET', key, unpack(old))
      for j = 1, #old do
        if ov[j] then sum = sum - tonumber(ov[j]) end
      end
    end
  end
  out[#out + 1] = math.max(sum, 0)
end
out[#out + 1] = redis.call('ZCOUNT', prefix .. ':leases', now, '+inf')
local f = redis.call('HMGET', prefix .. ':stats', 'ok', 'lat', 'consec', 'open_until')
for i = 1, 4 do
  out[#out + 1] = f[i] or ''
end
local thr = redis.call('HMGET', prefix .. ':thr', 'rate', 'at', 'step', 'ceil')
if thr[1] then
  local rate = tonumber(thr[1]) + tonumber(thr[3]) * math.max(now - tonumber(thr[2]), 0) / 1000
  local ceil = tonumber(thr[4])
  if ceil > 0 and rate >= ceil then
    out[#out + 1] = ''
  else
    out[#out + 1] = string.format('%.3f', rate)
  end
else
  out[#out + 1] = ''
end
return out
