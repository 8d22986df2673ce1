-- Gives back what a placement charged, when the provider never saw the
-- message (the send failed before handing it over, or it was cancelled).
--
-- KEYS[1]  key prefix of the provider (as in reserve.lua)
-- ARGV[1]  cost; ARGV[2] the now_ms the reservation returned
-- ARGV[3]  n, then n pairs (window_ms, bucket_ms) of the provider windows
-- next     m, then m pairs of the per-recipient windows; rest: recipients
--
-- A charge whose bucket already left its window's running sum (the tail
-- moved past it) is gone with it: nothing to give back there.
local prefix = KEYS[1]
local cost = tonumber(ARGV[1])
local at = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local m = tonumber(ARGV[4 + n * 2])

local function give_back(key, win_s, size, amount)
  local win = tonumber(win_s)
  local bucket = math.floor(at / tonumber(size))
  local field = string.format('%d:%d', win, bucket)
  local v = redis.call('HMGET', key, win_s .. ':t', field, win_s .. ':s')
  local tail, value, sum = tonumber(v[1] or ''), tonumber(v[2] or ''), tonumber(v[3] or '0')
  if not tail or not value or bucket < tail then return end
  local back = math.min(amount, value)
  if value - back <= 0 then
    redis.call('HDEL', key, field)
  else
    redis.call('HSET', key, field, string.format('%d', value - back))
  end
  redis.call('HSET', key, win_s .. ':s', string.format('%d', math.max(sum - back, 0)))
end

for i = 0, n - 1 do
  give_back(prefix .. ':w', ARGV[4 + i * 2], ARGV[5 + i * 2], cost)
end
for r = 5 + n * 2 + m * 2, #ARGV do
  for i = 0, m - 1 do
    local o = 5 + n * 2 + i * 2
    give_back(prefix .. ':r:' .. ARGV[r], ARGV[o], ARGV[o + 1], 1)
  end
end
return 1
