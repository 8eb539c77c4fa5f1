"""The Lua script Redis runs for the fleet's spend budgets: one batch of settles and admissions,
atomically.

A budget's period is a hash ``{s: spent USD, r: reserved USD, u: unpriced calls}`` under a key
naming its scope, id, period and the period's start, expiring an hour after the period ends. A
missing key is seeded with the spend the asking process read from the database (plus what it
counted since), so a Redis that restarted or never saw the budget starts from the truth.

KEYS: one per settle, then per admission its keys (every scope the call touches).
ARGV: number of settles, number of admissions; per settle (expire-at ms, seed spent, seed
unpriced, reserved to take back, spent to add, unpriced calls to add); per admission (number of
keys, amount to reserve, then per key: expire-at ms, seed spent, seed unpriced, limit (-1: none)).

Reply: per admission 0 (reserved) or the 1-based index of the key that refused, then per key its
spent and reserved after, as exact decimal strings (a Lua number in a reply is truncated).
"""

from __future__ import annotations

from typing import Final

FLEET_BUDGET_SCRIPT: Final = """
local SLACK = 1e-9
local settles = tonumber(ARGV[1])
local admissions = tonumber(ARGV[2])
local a = 3
local k = 1

local function seed(key, expire_at, spent, unpriced)
  if redis.call('HSETNX', key, 's', spent) == 1 then
    redis.call('HSET', key, 'r', 0, 'u', unpriced)
  end
  redis.call('PEXPIREAT', key, expire_at)
end

for _ = 1, settles do
  local key = KEYS[k]
  seed(key, ARGV[a], ARGV[a + 1], ARGV[a + 2])
  local back = tonumber(ARGV[a + 3])
  if back ~= 0 then
    local left = tonumber(redis.call('HINCRBYFLOAT', key, 'r', -back))
    if left < 0 then redis.call('HSET', key, 'r', 0) end
  end
  if tonumber(ARGV[a + 4]) ~= 0 then redis.call('HINCRBYFLOAT', key, 's', ARGV[a + 4]) end
  if tonumber(ARGV[a + 5]) ~= 0 then redis.call('HINCRBY', key, 'u', ARGV[a + 5]) end
  a = a + 6
  k = k + 1
end

local reply = {}
for _ = 1, admissions do
  local count = tonumber(ARGV[a])
  local amount = tonumber(ARGV[a + 1])
  a = a + 2
  local refused = 0
  for i = 0, count - 1 do
    local key = KEYS[k + i]
    local base = a + 4 * i
    seed(key, ARGV[base], ARGV[base + 1], ARGV[base + 2])
    local limit = tonumber(ARGV[base + 3])
    if refused == 0 and limit >= 0 then
      local spent = tonumber(redis.call('HGET', key, 's'))
      local reserved = tonumber(redis.call('HGET', key, 'r'))
      if spent + reserved >= limit - SLACK then refused = i + 1 end
    end
  end
  if refused == 0 and amount > 0 then
    for i = 0, count - 1 do redis.call('HINCRBYFLOAT', KEYS[k + i], 'r', amount) end
  end
  reply[#reply + 1] = refused
  for i = 0, count - 1 do
    reply[#reply + 1] = redis.call('HGET', KEYS[k + i], 's')
    reply[#reply + 1] = redis.call('HGET', KEYS[k + i], 'r')
  end
  a = a + 4 * count
  k = k + count
end
return reply
"""
