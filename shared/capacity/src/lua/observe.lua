-- Feeds a batch of send outcomes into a provider's statistics and circuit
-- breaker, atomically, so every worker and scheduler sees one truth.
--
-- KEYS[1]  key prefix of the provider (as in reserve.lua)
-- ARGV[1]  successes; ARGV[2] failures (the provider's fault: errors,
--          timeouts, throttling — not a bad recipient)
-- ARGV[3]  summed latency in ms of the sends that reached the provider;
--          ARGV[4] how many sends that sum covers
-- ARGV[5]  EWMA weight of one observation (0 < alpha <= 1)
-- ARGV[6]  consecutive failures that open the circuit
-- ARGV[7]  first open period in ms; ARGV[8] the longest (it doubles on
--          every failed probe)
--
-- Fields: ok (success rate, EWMA), lat (latency ms, EWMA), consec
-- (consecutive failures), open_until (ms; the circuit is open before it
-- and half-open after it while consec >= threshold), cooldown (ms).
-- Returns {ok, lat, consec, open_until} as strings.
local key = KEYS[1] .. ':stats'
local succ = tonumber(ARGV[1])
local fail = tonumber(ARGV[2])
local lat_sum = tonumber(ARGV[3])
local lat_n = tonumber(ARGV[4])
local alpha = tonumber(ARGV[5])
local threshold = tonumber(ARGV[6])
local base_cooldown = tonumber(ARGV[7])
local max_cooldown = tonumber(ARGV[8])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local f = redis.call('HMGET', key, 'ok', 'lat', 'consec', 'open_until', 'cooldown')
local ok = tonumber(f[1]) or 1.0
local lat = tonumber(f[2])
local consec = tonumber(f[3]) or 0
local open_until = tonumber(f[4]) or 0
local cooldown = tonumber(f[5]) or base_cooldown

local total = succ + fail
if total > 0 then
  local keep = (1 - alpha) ^ total
  ok = ok * keep + (1 - keep) * (succ / total)
end
if lat_n > 0 then
  local mean = lat_sum / lat_n
  if lat then
    local keep = (1 - alpha) ^ lat_n
    lat = lat * keep + (1 - keep) * mean
  else
    lat = mean
  end
end

if succ > 0 then
  -- A success closes the circuit (and ends a half-open probe well).
  consec = 0
  open_until = 0
  cooldown = base_cooldown
elseif fail > 0 then
  consec = consec + fail
  if consec >= threshold and open_until <= now then
    -- Closed, or half-open with a failed probe: open (again), for longer.
    open_until = now + cooldown
    cooldown = math.min(cooldown * 2, max_cooldown)
  end
end

redis.call('HSET', key, 'ok', tostring(ok), 'lat', tostring(lat or 0), 'consec', consec,
  'open_until', open_until, 'cooldown', cooldown, 'updated', now)
redis.call('PEXPIRE', key, 7 * 86400000)
return {tostring(ok), tostring(lat or 0), tostring(consec), tostring(open_until)}
