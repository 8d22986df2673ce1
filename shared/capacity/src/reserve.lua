-- Charges one placement against a provider's rolling windows, atomically.
--
-- KEYS[1]  key prefix of the provider, hash-tagged: "<ns>:cap:{<provider>}"
-- ARGV[1]  cost in the provider's unit (a WeWork send to five users is 5)
-- ARGV[2..] triples (window_ms, bucket_ms, limit), one per configured window
--
-- Each window is counted in buckets of bucket_ms; a check sums the buckets
-- that overlap the last window_ms plus the current one, so it counts a span
-- slightly longer than the window: it errs on the side of fewer sends,
-- never more. Time is the Redis server's, so schedulers with skewed clocks
-- agree.
--
-- Returns {1, now_ms} when granted (the caller keeps now_ms to refund the
-- same buckets), or {0, retry_after_ms, window_index} when a window is full.
local prefix = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = (#ARGV - 1) / 3

for i = 0, n - 1 do
  local win = tonumber(ARGV[2 + i * 3])
  local size = tonumber(ARGV[3 + i * 3])
  local limit = tonumber(ARGV[4 + i * 3])
  local current = math.floor(now / size)
  local span = math.floor(win / size)
  local keys = {}
  for b = current - span, current do
    keys[#keys + 1] = prefix .. ':' .. win .. ':' .. b
  end
  local values = redis.call('MGET', unpack(keys))
  local used = 0
  for _, v in ipairs(values) do
    if v then used = used + tonumber(v) end
  end
  if used + cost > limit then
    if cost > limit then
      return {0, -1, i}
    end
    -- Wait until enough of the oldest buckets have left the counted span:
    -- bucket b leaves it at the start of bucket b + span + 1.
    local freed = 0
    for j, v in ipairs(values) do
      local b = current - span + j - 1
      if v then freed = freed + tonumber(v) end
      if used - freed + cost <= limit then
        return {0, (b + span + 1) * size - now, i}
      end
    end
    return {0, (current + span + 1) * size - now, i}
  end
end

for i = 0, n - 1 do
  local win = tonumber(ARGV[2 + i * 3])
  local size = tonumber(ARGV[3 + i * 3])
  local key = prefix .. ':' .. win .. ':' .. math.floor(now / size)
  redis.call('INCRBY', key, cost)
  redis.call('PEXPIRE', key, win + 2 * size)
end
return {1, now}
