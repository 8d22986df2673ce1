-- Gives back what a placement charged, when the provider never saw the
-- message (the send failed before handing it over, or it was cancelled).
--
-- KEYS[1]  key prefix of the provider (as in reserve.lua)
-- ARGV[1]  cost; ARGV[2] the now_ms the reservation returned
-- ARGV[3]  n, then n pairs (window_ms, bucket_ms) of the provider windows
-- next     m, then m pairs of the per-recipient windows; rest: recipients
local prefix = KEYS[1]
local cost = tonumber(ARGV[1])
local at = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local m = tonumber(ARGV[4 + n * 2])

local function give_back(base, win, size, amount)
  local key = base .. ':' .. win .. ':' .. math.floor(at / size)
  local v = redis.call('GET', key)
  if v then
    if tonumber(v) <= amount then
      redis.call('DEL', key)
    else
      redis.call('DECRBY', key, amount)
    end
  end
end

for i = 0, n - 1 do
  give_back(prefix, tonumber(ARGV[4 + i * 2]), tonumber(ARGV[5 + i * 2]), cost)
end
for r = 5 + n * 2 + m * 2, #ARGV do
  for i = 0, m - 1 do
    local o = 5 + n * 2 + i * 2
    give_back(prefix .. ':r:' .. ARGV[r], tonumber(ARGV[o]), tonumber(ARGV[o + 1]), 1)
  end
end
return 1
