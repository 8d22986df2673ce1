-- Charges one placement against a provider's rolling windows and, for
-- channels with per-recipient caps (WeWork), against each recipient's
-- windows on that provider — all or nothing, atomically.
--
-- KEYS[1]  key prefix of the provider, hash-tagged: "<ns>:cap:{<provider>}"
-- ARGV[1]  cost in the provider's unit (a WeWork send to five users is 5)
-- ARGV[2]  n, the number of provider windows; then n triples
--          (window_ms, bucket_ms, limit)
-- next     m, the number of per-recipient windows; then m triples
-- rest     the recipients (each is charged 1 per recipient window)
--
-- Each window is counted in buckets of bucket_ms; a check sums the buckets
-- that overlap the last window_ms plus the current one, so it counts a span
-- slightly longer than the window: it errs on the side of fewer sends,
-- never more. Time is the Redis server's, so schedulers with skewed clocks
-- agree.
--
-- Returns {1, now_ms} when granted (the caller keeps now_ms to refund the
-- same buckets), or {0, retry_after_ms, window_index, kind} when a window
-- is full (kind 0: the provider's, 1: a recipient's), with retry_after_ms
-- -1 when the cost exceeds the window's whole limit.
local prefix = KEYS[1]
local cost = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local n = tonumber(ARGV[2])
local m = tonumber(ARGV[3 + n * 3])
local first_recipient = 4 + n * 3 + m * 3

-- Checks one counter family; returns nil when `amount` fits, else the wait.
local function check(base, win, size, limit, amount)
  local current = math.floor(now / size)
  local span = math.floor(win / size)
  local keys = {}
  for b = current - span, current do
    keys[#keys + 1] = base .. ':' .. win .. ':' .. b
  end
  local values = redis.call('MGET', unpack(keys))
  local used = 0
  for _, v in ipairs(values) do
    if v then used = used + tonumber(v) end
  end
  if used + amount <= limit then
    return nil
  end
  if amount > limit then
    return -1
  end
  -- Wait until enough of the oldest buckets have left the counted span:
  -- bucket b leaves it at the start of bucket b + span + 1.
  local freed = 0
  for j, v in ipairs(values) do
    local b = current - span + j - 1
    if v then freed = freed + tonumber(v) end
    if used - freed + amount <= limit then
      return (b + span + 1) * size - now
    end
  end
  return (current + span + 1) * size - now
end

local function charge(base, win, size, amount)
  local key = base .. ':' .. win .. ':' .. math.floor(now / size)
  redis.call('INCRBY', key, amount)
  redis.call('PEXPIRE', key, win + 2 * size)
end

for i = 0, n - 1 do
  local wait = check(prefix, tonumber(ARGV[3 + i * 3]), tonumber(ARGV[4 + i * 3]),
    tonumber(ARGV[5 + i * 3]), cost)
  if wait then return {0, wait, i, 0} end
end
for r = first_recipient, #ARGV do
  local base = prefix .. ':r:' .. ARGV[r]
  for i = 0, m - 1 do
    local o = 4 + n * 3 + i * 3
    local wait = check(base, tonumber(ARGV[o]), tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), 1)
    if wait then return {0, wait, i, 1} end
  end
end

for i = 0, n - 1 do
  charge(prefix, tonumber(ARGV[3 + i * 3]), tonumber(ARGV[4 + i * 3]), cost)
end
for r = first_recipient, #ARGV do
  local base = prefix .. ':r:' .. ARGV[r]
  for i = 0, m - 1 do
    local o = 4 + n * 3 + i * 3
    charge(base, tonumber(ARGV[o]), tonumber(ARGV[o + 1]), 1)
  end
end
return {1, now}
