-- Gives back what a placement charged, when the provider never saw the
-- message (the send failed before handing it over, or it was cancelled).
--
-- KEYS[1]  key prefix of the provider (as in reserve.lua)
-- ARGV[1]  cost; ARGV[2] the now_ms the reservation returned
-- ARGV[3..] pairs (window_ms, bucket_ms)
local prefix = KEYS[1]
local cost = tonumber(ARGV[1])
local at = tonumber(ARGV[2])
local n = (#ARGV - 2) / 2
for i = 0, n - 1 do
  local win = tonumber(ARGV[3 + i * 2])
  local size = tonumber(ARGV[4 + i * 2])
  local key = prefix .. ':' .. win .. ':' .. math.floor(at / size)
  local v = redis.call('GET', key)
  if v then
    if tonumber(v) <= cost then
      redis.call('DEL', key)
    else
      redis.call('DECRBY', key, cost)
    end
  end
end
return 1
