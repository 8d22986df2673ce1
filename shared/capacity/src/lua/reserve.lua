-- Charges placements against a provider's rolling windows and, for
-- channels with per-recipient caps (WeWork), against each recipient's
-- windows on that provider: each placement all or nothing, atomically, and
-- a batch of placements in one call (one round trip, one read of the
-- provider's counters; docs/decisions/0006-capacity-running-sums.md).
--
-- KEYS[1]  key prefix of the provider, hash-tagged: "<ns>:cap:{<provider>}"
-- ARGV[1]  n, the number of provider windows; then n triples
--          (window_ms, bucket_ms, limit)
-- next     m, the number of per-recipient windows; then m triples
-- next     k, the number of placements; then per placement its cost in
--          the provider's unit (a WeWork send to five users is 5), its
--          recipient count r and r recipients (each charged 1 per
--          recipient window; r is 0 when m is 0)
--
-- Counters: one hash per provider ("<prefix>:w") and one per recipient
-- ("<prefix>:r:<recipient>"). Per window W it holds the buckets
-- ("W:<bucket>"), a running sum of the buckets still counted ("W:s") and
-- the oldest bucket in that sum ("W:t"). A bucket leaving the span is
-- subtracted from the sum and deleted by the first call that sees it
-- gone, so a check reads three fields per window, not every bucket.
--
-- A window is counted in buckets of bucket_ms; the sum covers the buckets
-- that overlap the last window_ms plus the current one, a span slightly
-- longer than the window: it errs on the side of fewer sends, never more.
-- Time is the Redis server's, so schedulers with skewed clocks agree.
--
-- Returns four numbers per placement: {1, now_ms, 0, 0} when granted (the
-- caller keeps now_ms to refund the same buckets), or {0, retry_after_ms,
-- window_index, kind} when a window is full (kind 0: the provider's, 1: a
-- recipient's), with retry_after_ms -1 when the cost exceeds the window's
-- whole limit. Kind 2: the provider is throttled (below). {-1} alone: the provider's long windows wait to be restored
-- from their checkpoint (see below).
local prefix = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2 + n * 3])
local first_item = 3 + n * 3 + m * 3

local function windows(from, count)
  local list = {}
  for i = 0, count - 1 do
    local o = from + i * 3
    local w = {win = tonumber(ARGV[o]), size = tonumber(ARGV[o + 1]), limit = tonumber(ARGV[o + 2])}
    w.current = math.floor(now / w.size)
    w.span = math.floor(w.win / w.size)
    w.first = w.current - w.span
    w.sum_f = ARGV[o] .. ':s'
    w.tail_f = ARGV[o] .. ':t'
    w.cur_f = string.format('%d:%d', w.win, w.current)
    list[#list + 1] = w
  end
  return list
end

-- After Redis lost its keys, a provider's hour and day windows are
-- counted again from their checkpoint (restore.lua) before anything is
-- granted on it: until its ready marker is back, the answer is {-1}.
for i = 0, n - 1 do
  if tonumber(ARGV[2 + i * 3]) >= 3600000 then
    if redis.call('EXISTS', prefix .. ':ready') == 0 then return {-1} end
    break
  end
end

local provider_windows = windows(2, n)
local recipient_windows = windows(3 + n * 3, m)

-- Reads the sums of one counter hash and brings them up to date: buckets
-- that left the span are subtracted and deleted (and the new sums saved,
-- whatever the outcome). Returns {sum, cur} per window.
local function read(key, wins)
  local fields = {}
  for _, w in ipairs(wins) do
    fields[#fields + 1] = w.sum_f
    fields[#fields + 1] = w.tail_f
    fields[#fields + 1] = w.cur_f
  end
  local v = redis.call('HMGET', key, unpack(fields))
  local states = {}
  local expired = {}
  local saved = {}
  for i, w in ipairs(wins) do
    local sum = tonumber(v[i * 3 - 2] or '0')
    local tail = tonumber(v[i * 3 - 1] or w.first)
    local cur = tonumber(v[i * 3] or '0')
    if tail < w.first then
      -- Stored buckets lie in [tail, tail + span]; those before `first`
      -- have left the span.
      local old = {}
      for b = tail, math.min(w.first - 1, tail + w.span) do
        old[#old + 1] = string.format('%d:%d', w.win, b)
      end
      if tail + w.span < w.first then
        sum = 0
      else
        local ov = redis.call('HMGET', key, unpack(old))
        for j = 1, #old do
          if ov[j] then sum = sum - tonumber(ov[j]) end
        end
      end
      for _, f in ipairs(old) do expired[#expired + 1] = f end
      if sum < 0 then sum = 0 end
      saved[#saved + 1] = w.sum_f
      saved[#saved + 1] = string.format('%d', sum)
      saved[#saved + 1] = w.tail_f
      saved[#saved + 1] = string.format('%d', w.first)
    end
    states[i] = {sum = sum, cur = cur}
  end
  if #expired > 0 then
    redis.call('HDEL', key, unpack(expired))
    redis.call('HSET', key, unpack(saved))
  end
  return states
end

-- nil when `amount` fits every window, else the full window's index and
-- the wait: until enough of the oldest buckets have left the span (bucket
-- b leaves it at the start of bucket b + span + 1).
local function check(key, wins, states, amount)
  for i, w in ipairs(wins) do
    local used = states[i].sum
    if used + amount > w.limit then
      if amount > w.limit then return i - 1, -1 end
      local fields = {}
      for b = w.first, w.current do
        fields[#fields + 1] = string.format('%d:%d', w.win, b)
      end
      local values = redis.call('HMGET', key, unpack(fields))
      local freed = 0
      -- The current bucket may hold this batch's charges, not yet written.
      values[#fields] = states[i].cur
      for j = 1, #fields do
        if values[j] then freed = freed + tonumber(values[j]) end
        if used - freed + amount <= w.limit then
          return i - 1, (w.first + j - 1 + w.span + 1) * w.size - now
        end
      end
      return i - 1, (w.current + w.span + 1) * w.size - now
    end
  end
  return nil
end

local function charge(key, wins, states)
  local args = {}
  local ttl = 0
  for i, w in ipairs(wins) do
    args[#args + 1] = w.sum_f
    args[#args + 1] = string.format('%d', states[i].sum)
    args[#args + 1] = w.tail_f
    args[#args + 1] = string.format('%d', w.first)
    args[#args + 1] = w.cur_f
    args[#args + 1] = string.format('%d', states[i].cur)
    if w.win + 2 * w.size > ttl then ttl = w.win + 2 * w.size end
  end
  redis.call('HSET', key, unpack(args))
  redis.call('PEXPIRE', key, ttl)
end

local function add(wins, states, amount)
  for i, _ in ipairs(wins) do
    states[i].sum = states[i].sum + amount
    states[i].cur = states[i].cur + amount
  end
end

-- A provider that answered "too fast" is throttled (throttle.lua): an
-- admitted rate in units per second that recovers by `step` units per
-- second, and a hold until `until`. Grants are spaced by a GCRA at that
-- rate with a burst of THROTTLE_BURST_MS; a denial has kind 2. Fully
-- recovered (the rate back at the configured ceiling), the throttle ends.
local THROTTLE_BURST_MS = 1000
local throttle_key = prefix .. ':thr'
local throttle = nil
local thr = redis.call('HMGET', throttle_key, 'rate', 'at', 'until', 'tat', 'ceil', 'step')
if thr[1] then
  local rate = tonumber(thr[1]) + tonumber(thr[6]) * math.max(now - tonumber(thr[2]), 0) / 1000
  local ceil = tonumber(thr[5])
  if ceil > 0 and rate >= ceil then
    redis.call('DEL', throttle_key)
  else
    throttle = {rate = rate, hold = tonumber(thr[3]), tat = tonumber(thr[4])}
  end
end

-- Granted units per second, for throttle.lua's first estimate of the rate
-- the provider was taking.
local grants_key = prefix .. ':g'

local provider_key = prefix .. ':w'
local provider_states = {}
if n > 0 then provider_states = read(provider_key, provider_windows) end
local recipient_states = {}
local touched = {}
local granted_any = false
local granted_units = 0
local out = {}
local k = tonumber(ARGV[first_item])
local o = first_item + 1
for _ = 1, k do
  local cost = tonumber(ARGV[o])
  local r = tonumber(ARGV[o + 1])
  local first_r, last_r = o + 2, o + 1 + r
  o = o + 2 + r
  local full_i, wait, kind = nil, nil, 0
  if throttle then
    local start = math.max(throttle.tat, now)
    if throttle.hold > now then
      full_i, wait, kind = 0, throttle.hold - now, 2
    elseif start - now > THROTTLE_BURST_MS then
      full_i, wait, kind = 0, math.ceil(start - now - THROTTLE_BURST_MS), 2
    end
  end
  if not full_i and n > 0 then
    full_i, wait = check(provider_key, provider_windows, provider_states, cost)
  end
  if not full_i and m > 0 then
    for j = first_r, last_r do
      local who = ARGV[j]
      if not recipient_states[who] then
        recipient_states[who] = read(prefix .. ':r:' .. who, recipient_windows)
      end
      full_i, wait = check(prefix .. ':r:' .. who, recipient_windows, recipient_states[who], 1)
      if full_i then kind = 1 break end
    end
  end
  if full_i then
    out[#out + 1] = 0
    out[#out + 1] = wait
    out[#out + 1] = full_i
    out[#out + 1] = kind
  else
    if n > 0 then add(provider_windows, provider_states, cost) end
    if m > 0 then
      for j = first_r, last_r do
        add(recipient_windows, recipient_states[ARGV[j]], 1)
        touched[ARGV[j]] = true
      end
    end
    if throttle then
      throttle.tat = math.max(throttle.tat, now) + cost * 1000 / throttle.rate
    end
    granted_any = true
    granted_units = granted_units + cost
    out[#out + 1] = 1
    out[#out + 1] = now
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
end

if granted_any and n > 0 then charge(provider_key, provider_windows, provider_states) end
if granted_any then
  redis.call('HINCRBY', grants_key, string.format('%d', math.floor(now / 1000)), granted_units)
  redis.call('PEXPIRE', grants_key, 10000)
  if throttle then redis.call('HSET', throttle_key, 'tat', string.format('%.3f', throttle.tat)) end
end
for who, _ in pairs(touched) do
  charge(prefix .. ':r:' .. who, recipient_windows, recipient_states[who])
end
return out
