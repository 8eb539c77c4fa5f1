"""The Redis layout of the fleet's dashboard sessions and the Lua scripts that change it.

Each change is one script, so it is atomic across the fleet (two processes ending and refreshing
the same session cannot interleave) and costs one round trip. The scripts find a user's sessions
themselves, so the keys they touch are not all declared: they need one Redis primary (standalone
or behind Sentinel), not a Redis Cluster; the ``{sessions}`` hash tag keeps them in one slot.

- ``<prefix>s:<sha256 of the token>``: a hash (username, user = the folded name, role, mcp = must
  change password "1"/"0", created, expires in Unix ms, digest of the password hash). Redis
  expires it at its ``expires``, so nothing outlives its session.
- ``<prefix>u:<folded username>``: a sorted set of that user's session keys by creation time (the
  per-user cap ends the oldest); it expires with the user's last session.
- ``<prefix>all``: a sorted set of every session key by expiry (the global bound, the count);
  expired members are pruned as sessions are made and counted.
- ``<prefix>users``: the folded names of the users who have sessions, for following user changes.
"""

from __future__ import annotations

from typing import Final

from actors.redis_link import KEY_PREFIX

PREFIX: Final = KEY_PREFIX + "{sessions}:"
SESSION: Final = PREFIX + "s:"
USER: Final = PREFIX + "u:"
ALL: Final = PREFIX + "all"
USERS: Final = PREFIX + "users"

# Shared by the scripts: drop one session from every index; make a user's set live as long as
# its longest session.
_HELPERS: Final = """
local function drop(key, user)
  redis.call('DEL', ARGV[1] .. key)
  redis.call('ZREM', ARGV[2] .. user, key)
  redis.call('ZREM', ARGV[3], key)
end
local function outlive(user_key, expires)
  local left = redis.call('PTTL', user_key)
  local now_ms = tonumber(redis.call('TIME')[1]) * 1000
  if left < 0 or now_ms + left < expires then
    redis.call('PEXPIREAT', user_key, expires)
  end
end
"""

# ARGV: session prefix, user prefix, all, users, key, username, folded, role, mcp, created,
# expires, digest, per-user cap, global cap, now. Returns how many sessions made room.
CREATE: Final = (
    _HELPERS
    + """
local key, user = ARGV[5], ARGV[7]
local user_key = ARGV[2] .. user
local now = tonumber(ARGV[15])
local ended = 0
for _, member in ipairs(redis.call('ZRANGE', user_key, 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. member) == 0 then drop(member, user) end
end
local over = redis.call('ZCARD', user_key) - tonumber(ARGV[13]) + 1
if over > 0 then
  for _, member in ipairs(redis.call('ZRANGE', user_key, 0, over - 1)) do
    drop(member, user)
    ended = ended + 1
  end
end
redis.call('ZREMRANGEBYSCORE', ARGV[3], '-inf', now)
local over_all = redis.call('ZCARD', ARGV[3]) - tonumber(ARGV[14]) + 1
if over_all > 0 then
  for _, member in ipairs(redis.call('ZRANGE', ARGV[3], 0, over_all - 1)) do
    local owner = redis.call('HGET', ARGV[1] .. member, 'user')
    drop(member, owner or '')
    ended = ended + 1
  end
end
redis.call('HSET', ARGV[1] .. key, 'username', ARGV[6], 'user', user, 'role', ARGV[8],
  'mcp', ARGV[9], 'created', ARGV[10], 'expires', ARGV[11], 'digest', ARGV[12])
redis.call('PEXPIREAT', ARGV[1] .. key, ARGV[11])
redis.call('ZADD', user_key, ARGV[10], key)
outlive(user_key, tonumber(ARGV[11]))
redis.call('ZADD', ARGV[3], ARGV[11], key)
redis.call('SADD', ARGV[4], user)
return ended
"""
)

# ARGV: session prefix, user prefix, all, key, now, ttl (ms), refresh "1"/"0".
# Returns nil (no such session), 0 (it had expired: now gone), or its fields.
LOOKUP: Final = (
    _HELPERS
    + """
local fields = redis.call('HGETALL', ARGV[1] .. ARGV[4])
if #fields == 0 then return nil end
local s = {}
for i = 1, #fields, 2 do s[fields[i]] = fields[i + 1] end
local now, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local expires = tonumber(s.expires)
if now >= expires then
  drop(ARGV[4], s.user)
  return 0
end
if ARGV[7] == '1' and expires - now < ttl / 2 then
  expires = now + ttl
  redis.call('HSET', ARGV[1] .. ARGV[4], 'expires', expires)
  redis.call('PEXPIREAT', ARGV[1] .. ARGV[4], expires)
  redis.call('ZADD', ARGV[3], expires, ARGV[4])
  outlive(ARGV[2] .. s.user, expires)
end
return {s.username, s.role, s.mcp, s.created, tostring(expires), s.digest}
"""
)

# ARGV: session prefix, user prefix, all, key. Returns 1 if there was such a session.
END: Final = (
    _HELPERS
    + """
local user = redis.call('HGET', ARGV[1] .. ARGV[4], 'user')
if not user then
  redis.call('ZREM', ARGV[3], ARGV[4])
  return 0
end
drop(ARGV[4], user)
return 1
"""
)

# ARGV: session prefix, user prefix, all, folded username, the key to keep (or "").
# Returns how many sessions ended.
REVOKE_USER: Final = (
    _HELPERS
    + """
local ended = 0
for _, member in ipairs(redis.call('ZRANGE', ARGV[2] .. ARGV[4], 0, -1)) do
  if member ~= ARGV[5] then
    if redis.call('EXISTS', ARGV[1] .. member) == 1 then ended = ended + 1 end
    drop(member, ARGV[4])
  end
end
return ended
"""
)

# ARGV: session prefix, user prefix, all, folded username, role, mcp, digest ("" = unchanged).
UPDATE_USER: Final = (
    _HELPERS
    + """
local names = {'role', 'mcp', 'digest'}
for _, member in ipairs(redis.call('ZRANGE', ARGV[2] .. ARGV[4], 0, -1)) do
  if redis.call('EXISTS', ARGV[1] .. member) == 1 then
    for i, name in ipairs(names) do
      if ARGV[4 + i] ~= '' then redis.call('HSET', ARGV[1] .. member, name, ARGV[4 + i]) end
    end
  else
    drop(member, ARGV[4])
  end
end
return 0
"""
)

# ARGV: session prefix, user prefix, all, users, then per stored user: folded name, role, mcp,
# digest. Ends the sessions of users not listed or whose digest differs, applies role and mcp to
# the others; returns how many ended.
FOLLOW_USERS: Final = (
    _HELPERS
    + """
local states = {}
for i = 5, #ARGV, 4 do states[ARGV[i]] = {ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]} end
local ended = 0
for _, user in ipairs(redis.call('SMEMBERS', ARGV[4])) do
  local state = states[user]
  for _, member in ipairs(redis.call('ZRANGE', ARGV[2] .. user, 0, -1)) do
    local digest = redis.call('HGET', ARGV[1] .. member, 'digest')
    if not digest then
      drop(member, user)
    elseif state == nil or digest ~= state[3] then
      drop(member, user)
      ended = ended + 1
    else
      redis.call('HSET', ARGV[1] .. member, 'role', state[1], 'mcp', state[2])
    end
  end
  if redis.call('EXISTS', ARGV[2] .. user) == 0 then redis.call('SREM', ARGV[4], user) end
end
return ended
"""
)

# ARGV: all, now. Prunes expired members; returns how many sessions are live.
COUNT: Final = """
redis.call('ZREMRANGEBYSCORE', ARGV[1], '-inf', ARGV[2])
return redis.call('ZCARD', ARGV[1])
"""
