-- A provider answered "too fast" (WeWork 45009, HTTP 429, SMTP 4xx with
-- rate wording): lower its admitted rate — multiplicatively, at most once a
-- second however many refusals arrive together — and hold it for the
-- provider's Retry-After. The rate then recovers additively, by `step`
-- units per second (reserve.lua applies it lazily), until it reaches the
-- configured ceiling or ten minutes pass without another refusal.
-- docs/decisions/0018.
--
-- KEYS[1]  key prefix of the provider: "<ns>:cap:{<provider>}"
-- ARGV[1]  hold_ms: the provider's Retry-After, 0 when it gave none
-- ARGV[2]  ceil: the configured rate in units/s (per_minute / 60), 0 none
-- ARGV[3]  decrease: the factor a cut multiplies the rate by (0.5)
-- ARGV[4]  step_share: the recovery per second as a share of the rate
--          after the cut (0.1)
-- ARGV[5]  floor: the lowest admitted rate in units/s
--
-- Returns {the admitted rate after the call as a string, the time of the
-- last cut in ms}.
local prefix = KEYS[1]
local key = prefix .. ':thr'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold_ms = tonumber(ARGV[1])
local ceil = tonumber(ARGV[2])
local decrease = tonumber(ARGV[3])
local step_share = tonumber(ARGV[4])
local floor = tonumber(ARGV[5])

local v = redis.call('HMGET', key, 'rate', 'at', 'until', 'tat', 'step', 'cut')
local rate
if v[1] then
  rate = tonumber(v[1]) + tonumber(v[5]) * math.max(now - tonumber(v[2]), 0) / 1000
else
  -- Not throttled yet: start from what was granted in the last three
  -- whole seconds (the rate the provider was being sent at).
  local second = math.floor(now / 1000)
  local g = redis.call('HMGET', prefix .. ':g', string.format('%d', second - 1),
    string.format('%d', second - 2), string.format('%d', second - 3))
  local sum = 0
  for i = 1, 3 do
    if g[i] then sum = sum + tonumber(g[i]) end
  end
  rate = sum / 3
  if rate <= 0 then rate = ceil end
  if rate <= 0 then rate = floor end
end
if ceil > 0 and rate > ceil then rate = ceil end
local cut = tonumber(v[6] or '0')
local step = tonumber(v[5] or '0')
if now - cut >= 1000 then
  rate = math.max(floor, rate * decrease)
  cut = now
  step = math.max(floor, rate * step_share)
end
local hold = math.max(tonumber(v[3] or '0'), now + hold_ms)
redis.call('HSET', key,
  'rate', string.format('%.3f', rate),
  'at', string.format('%d', now),
  'until', string.format('%d', hold),
  'tat', v[4] or string.format('%d', now),
  'ceil', string.format('%.3f', ceil),
  'step', string.format('%.3f', step),
  'cut', string.format('%d', cut))
redis.call('PEXPIRE', key, 600000)
return {string.format('%.3f', rate), cut}
