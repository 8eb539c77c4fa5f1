"""The Lua script Redis runs for the fleet's rate limits: one batch of settles and admissions,
decided atomically on Redis' clock, with the arithmetic of :class:`proxy.rate_limit.TokenBucket`.

A bucket is a hash ``{t: tokens, u: updated (s), c: capacity}``; a missing key is a full bucket,
so each key expires when its bucket would be full again and idle clients cost nothing.

KEYS: the global bucket, then one token bucket per settle, then (requests, tokens) per admission.
ARGV: global requests per minute, number of settles, number of admissions; then per settle
(tokens per minute it was taken under, tokens to give back (> 0) or charge (< 0)); then per
admission (requests per minute, tokens per minute, tokens to reserve, 1 for a peek that takes
nothing). 0 as a limit means none.

Reply: Redis' time, then per admission 1 (allowed) or 0 and the tokens left, after it, in its
requests, tokens and global buckets ("" where no limit applies), as exact decimal strings (a
Lua number in a reply is truncated to an integer).
"""

from __future__ import annotations

from typing import Final

FLEET_LIMIT_SCRIPT: Final = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local EPSILON = 1e-9
local buckets = {}
local order = {}

local function load(key, per_minute, keep_capacity)
  local bucket = buckets[key]
  if bucket == nil then
    local stored = redis.call('HMGET', key, 't', 'u', 'c')
    if stored[1] then
      local capacity = tonumber(stored[3])
      local tokens = tonumber(stored[1]) + math.max(0, now - tonumber(stored[2])) * capacity / 60
      bucket = {key = key, capacity = capacity, tokens = math.min(capacity, tokens),
                stored = true, dirty = false}
    else
      bucket = {key = key, capacity = per_minute, tokens = per_minute, stored = false,
                dirty = false}
    end
    buckets[key] = bucket
    order[#order + 1] = bucket
  end
  if not keep_capacity and bucket.capacity ~= per_minute then
    -- An admin changed the limit: the same fraction of the burst used (or owed).
    bucket.tokens = bucket.tokens * (per_minute / bucket.capacity)
    bucket.capacity = per_minute
    bucket.dirty = bucket.stored
  end
  return bucket
end

local function has(bucket, amount)
  return bucket == nil or amount - bucket.tokens <= EPSILON
end

local function take(bucket, amount)
  if bucket ~= nil then
    bucket.tokens = bucket.tokens - amount
    bucket.dirty = true
  end
end

local function left(bucket)
  if bucket == nil then return '' end
  return string.format('%.17g', bucket.tokens)
end

local global_rpm = tonumber(ARGV[1])
local settles = tonumber(ARGV[2])
local admissions = tonumber(ARGV[3])
local global = nil
if global_rpm > 0 then global = load(KEYS[1], global_rpm, false) end

for i = 1, settles do
  local per_minute = tonumber(ARGV[2 + 2 * i])
  local delta = tonumber(ARGV[3 + 2 * i])
  local bucket = buckets[KEYS[1 + i]]
  if bucket == nil and redis.call('EXISTS', KEYS[1 + i]) == 1 then
    bucket = load(KEYS[1 + i], per_minute, true)
  end
  if delta < 0 then
    -- A charge beyond the reservation may leave a debt; on a swept (full) bucket it starts there.
    bucket = bucket or load(KEYS[1 + i], per_minute, true)
    take(bucket, -delta)
  elseif bucket ~= nil and delta > 0 then
    -- A refund has nowhere to go in a bucket already full (or swept).
    bucket.tokens = math.min(bucket.capacity, bucket.tokens + delta)
    bucket.dirty = true
  end
end

local reply = {string.format('%.17g', now)}
local base = 3 + 2 * settles
local first_key = 1 + settles
for i = 1, admissions do
  local rpm = tonumber(ARGV[base + 4 * i - 3])
  local tpm = tonumber(ARGV[base + 4 * i - 2])
  local amount = tonumber(ARGV[base + 4 * i - 1])
  local peek = ARGV[base + 4 * i] == '1'
  local requests = nil
  local tokens = nil
  if rpm > 0 then requests = load(KEYS[first_key + 2 * i - 1], rpm, false) end
  if tpm > 0 then tokens = load(KEYS[first_key + 2 * i], tpm, false) end
  local allowed = has(requests, 1) and has(tokens, amount) and has(global, 1)
  if tokens ~= nil and amount > tokens.capacity then allowed = false end
  if allowed and not peek then
    take(requests, 1)
    take(tokens, amount)
    take(global, 1)
  end
  reply[#reply + 1] = allowed and 1 or 0
  reply[#reply + 1] = left(requests)
  reply[#reply + 1] = left(tokens)
  reply[#reply + 1] = left(global)
end

for _, bucket in ipairs(order) do
  if bucket.dirty then
    local missing = bucket.capacity - bucket.tokens
    -- Expires when full again (plus a second's margin): a missing key is a full bucket.
    local ttl = math.ceil(math.max(0, missing) / (bucket.capacity / 60) * 1000) + 1000
    redis.call('HSET', bucket.key, 't', string.format('%.17g', bucket.tokens),
               'u', string.format('%.17g', now), 'c', bucket.capacity)
    redis.call('PEXPIRE', bucket.key, ttl)
  end
end
return reply
"""
