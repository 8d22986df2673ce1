-- Counts a provider's long windows again after Redis lost its keys, from
-- the last checkpoint kept in PostgreSQL (docs/decisions/0017), once:
-- only while the provider's ready marker is missing, and it sets the
-- marker. Until then reserve.lua grants nothing on a provider with an hour
-- or day window (it fails closed).
--
-- KEYS[1]  key prefix of the provider, hash-tagged: "<ns>:cap:{<provider>}"
-- ARGV[1]  n, the number of windows; then per window: window_ms,
--          bucket_ms, c, and c pairs (bucket, used)
--
-- Buckets that have left the window's span are dropped; the running sum
-- and its oldest bucket are set from what is restored (and any refunds
-- that reached the empty hash first). Returns 1 when it restored, 0 when
-- the marker was already there.
local prefix = KEYS[1]
local ready = prefix .. ':ready'
if redis.call('EXISTS', ready) == 1 then return 0 end
local key = prefix .. ':w'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local o = 2
local ttl = 0
for _ = 1, n do
  local win, size, c = tonumber(ARGV[o]), tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  o = o + 3
  local current = math.floor(now / size)
  local first = current - math.floor(win / size)
  for _ = 1, c do
    local b, used = tonumber(ARGV[o]), tonumber(ARGV[o + 1])
    o = o + 2
    if b >= first and b <= current and used > 0 then
      redis.call('HINCRBY', key, string.format('%d:%d', win, b), used)
    end
  end
  local fields = {}
  for b = first, current do
    fields[#fields + 1] = string.format('%d:%d', win, b)
  end
  local v = redis.call('HMGET', key, unpack(fields))
  local sum = 0
  for j = 1, #fields do
    if v[j] then sum = sum + tonumber(v[j]) end
  end
  if sum < 0 then sum = 0 end
  redis.call('HSET', key, string.format('%d:s', win), string.format('%d', sum),
    string.format('%d:t', win), string.format('%d', first))
  if win + 2 * size > ttl then ttl = win + 2 * size end
end
if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
redis.call('SET', ready, '1')
return 1
