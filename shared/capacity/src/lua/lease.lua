-- Takes a concurrency slot on a provider: a lease that expires by itself
-- when the worker holding it dies, so a crash never leaks capacity.
--
-- KEYS[1]  key prefix of the provider (as in reserve.lua)
-- ARGV[1]  the provider's concurrency limit
-- ARGV[2]  the lease's holder (message id and attempt)
-- ARGV[3]  the lease's time to live in ms
--
-- Returns {1, 0} when taken (or renewed by the same holder), or
-- {0, ms} when every slot is held: ms until the soonest lease expires
-- (a release frees one sooner).
local key = KEYS[1] .. ':leases'
local limit = tonumber(ARGV[1])
local holder = ARGV[2]
local ttl = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if not redis.call('ZSCORE', key, holder) and redis.call('ZCARD', key) >= limit then
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, math.max(1, tonumber(first[2]) - now)}
end
redis.call('ZADD', key, now + ttl, holder)
redis.call('PEXPIRE', key, ttl * 2)
return {1, 0}
