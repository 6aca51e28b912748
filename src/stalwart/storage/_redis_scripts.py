# Copyright 2026 stalwart contributors
"""Lua source of the Redis engine: one script per operation, all checks server-side.

Record layout (see ``docs/storage/redis.md``): a hash with fields ``d`` (compact JSON data),
``v`` (version, decimal) and ``e`` (expires_at as a float literal, ``''`` for none). Every
script receives ``now`` from the store's clock and treats ``e <= now`` as absent.

Resends: when the client library may resend a command after losing its reply, every write call
passes one more key, its *replay marker* ``{tag}w:<random token>``. A write that applies stores
its reply there for :data:`REPLAY_WINDOW_S`; a call that finds its marker is a resend of a call
that already ran, and returns that reply without looking at the record -- whatever was written,
deleted or expired in between. Conflicts write nothing and are not remembered (a resend
evaluates them afresh, and still applies at most once).
The partition index (a sorted set) is kept alive at least as long as the records it lists:
persistent while a persistent record was written into it, else expiring with the longest TTL.

Scripts never write before every condition has passed, because Redis does not roll back the
writes of a script that fails half-way. Errors raised on purpose use the ``STALWART_INVALID``
code so the client maps them to :class:`~stalwart.storage.InvalidRecord`.

Reply shapes (all strings, since Redis truncates Lua numbers to integers):

- create / replace: ``{'ok'}`` or ``{status, d, v, e}`` with the current record on conflict.
- delete: ``{'ok'}``, ``{'absent'}``, ``{'conflict'}`` or ``{'conflict', d, v, e}``.
- increment: ``{'ok', d, v, e}`` (the record after the increment).
- query: ``{more, sort1, d1, v1, e1, sort2, ...}`` with ``more`` = ``'1'`` or ``'0'``.
- transact: ``{'ok', d1, v1, e1, ...}`` (``d`` is ``''`` for items whose data the client
  already knows) or ``{'conflict', index, reason, d, v, e}``.
"""

from __future__ import annotations

from typing import Final

INVALID_CODE: Final = "STALWART_INVALID"

REPLAY_WINDOW_S: Final = 60
"""How long a write's reply is remembered for a resend of the same call (see the docstring)."""

_COMMON: Final = (
    f"local REPLAY_MS = '{REPLAY_WINDOW_S * 1000}'\n"
    r"""
local INVALID = 'STALWART_INVALID '

local function read(key)
  return redis.call('HMGET', key, 'd', 'v', 'e')
end

-- The reply of the first run of this very call, if it applied (this is a resend); `marker`
-- is nil when the client never resends.
local function replayed(marker)
  if marker then
    local seen = redis.call('GET', marker)
    if seen then return cmsgpack.unpack(seen) end
  end
  return nil
end

-- Returns `reply`, remembered for a resend of this call.
local function applied(marker, reply)
  if marker then redis.call('SET', marker, cmsgpack.pack(reply), 'PX', REPLAY_MS) end
  return reply
end

local function is_live(cur, now)
  if not cur[2] then return false end
  local e = cur[3]
  return e == '' or tonumber(e) > now
end

-- The partition index must outlive every record it lists, or it would leak (a TTL'd record is
-- removed by Redis, its index member and the index key would stay forever). Called after a
-- record listed in `index` got the physical expiry `px` ('' = none): the index becomes
-- persistent, or its TTL grows to px. A persistent index is given px only when this record is
-- its sole member; with other members it stays persistent (one of them may be persistent, and
-- checking each would cost O(members) per write).
local function fit_index(index, px)
  if px == '' then
    redis.call('PERSIST', index)
    return
  end
  local ttl = redis.call('PTTL', index)
  if ttl >= 0 then
    if ttl < tonumber(px) then redis.call('PEXPIRE', index, px) end
  elseif redis.call('ZCARD', index) == 1 then
    redis.call('PEXPIRE', index, px)
  end
end

local function put(key, index, member, d, v, e, px)
  redis.call('HSET', key, 'd', d, 'v', v, 'e', e)
  if px == '' then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, px)
  end
  redis.call('ZADD', index, 0, member)
  fit_index(index, px)
end

"""
)

# Only the increment and transact scripts need these (``relist`` and the JSON scanner): every
# script run re-creates its local functions, so the create/replace/delete/query scripts (the
# idempotency hot path) leave them out.
_JSON_HELPERS: Final = r"""
local BILLION = 1000000000

-- A live record rewritten without touching its expiry: its member is normally in the index
-- already (and the index fitted to it); only when the index lost it (evicted, or deleted by
-- hand) is the index fitted again, to the record's remaining physical TTL.
local function relist(key, index, member)
  if redis.call('ZADD', index, 0, member) == 1 then
    local ttl = redis.call('PTTL', key)
    if ttl == -1 then
      fit_index(index, '')
    elseif ttl > 0 then
      fit_index(index, tostring(ttl))
    end
  end
end

-- A minimal scanner for the compact JSON written by the client (no insignificant whitespace):
-- enough to find one top-level member without decoding (cjson would turn [] into {} and round
-- large numbers, silently changing data the increment does not touch).
local function skip_string(s, i)
  local j = i + 1
  while true do
    local p = string.find(s, '["\\]', j)
    if not p then return nil end
    if string.sub(s, p, p) == '\\' then j = p + 2 else return p end
  end
end

local function skip_value(s, i)
  local c = string.sub(s, i, i)
  if c == '"' then return skip_string(s, i) end
  if c == '{' or c == '[' then
    local depth = 0
    local j = i
    while true do
      local p = string.find(s, '[%[%]{}"]', j)
      if not p then return nil end
      local ch = string.sub(s, p, p)
      if ch == '"' then
        p = skip_string(s, p)
        if not p then return nil end
      elseif ch == '{' or ch == '[' then
        depth = depth + 1
      else
        depth = depth - 1
        if depth == 0 then return p end
      end
      j = p + 1
    end
  end
  local p = string.find(s, '[,}%]]', i)
  if not p then return nil end
  return p - 1
end

local function find_member(doc, qkey)
  local n = #doc
  local i = 2
  if string.sub(doc, i, i) == '}' then return nil end
  while i <= n do
    if string.sub(doc, i, i) ~= '"' then return nil end
    local kend = skip_string(doc, i)
    if not kend then return nil end
    local vstart = kend + 2
    local vend = skip_value(doc, vstart)
    if not vend then return nil end
    if string.sub(doc, i, kend) == qkey then return vstart, vend end
    i = vend + 2
  end
  return nil
end

-- Integer text as (high, low): the digits above the last nine and the last nine, with the
-- sign on both; each part is exact in a Lua number (a double) for up to 19 digits.
local function int_parts(text)
  local sign, digits = 1, text
  if string.sub(text, 1, 1) == '-' then sign, digits = -1, string.sub(text, 2) end
  local n = #digits
  if n > 19 then return nil end
  if n <= 9 then return 0, sign * tonumber(digits) end
  return sign * tonumber(string.sub(digits, 1, n - 9)), sign * tonumber(string.sub(digits, n - 8))
end

-- Exact signed 64-bit integer sum of two integer texts, or nil outside -2^63 .. 2^63-1 (Lua
-- numbers are doubles, exact only to 2^53, so the sum is done in two parts of nine digits).
local function add_int64(a, b)
  local ah, al = int_parts(a)
  local bh, bl = int_parts(b)
  if not ah or not bh then return nil end
  local high, low = ah + bh, al + bl
  if low >= BILLION then high, low = high + 1, low - BILLION
  elseif low <= -BILLION then high, low = high - 1, low + BILLION end
  if high > 0 and low < 0 then high, low = high - 1, low + BILLION
  elseif high < 0 and low > 0 then high, low = high + 1, low - BILLION end
  if high > 9223372036 or (high == 9223372036 and low > 854775807)
    or high < -9223372036 or (high == -9223372036 and low < -854775808) then
    return nil
  end
  if high == 0 then return string.format('%d', low) end
  return string.format('%d%09d', high, math.abs(low))
end

local function add_number(text, by)
  if not string.match(text, '^-?%d[%d%.eE+-]*$') then
    return nil, 'is not a number'
  end
  if string.match(text, '^-?%d+$') and string.match(by, '^-?%d+$') then
    local sum = add_int64(text, by)
    if not sum then return nil, 'would leave the signed 64-bit integer range' end
    return sum
  end
  local a, b = tonumber(text), tonumber(by)
  if not a or not b then return nil, 'is not a number' end
  local r = a + b
  if r ~= r or r == math.huge or r == -math.huge then
    return nil, 'would become a non-finite number'
  end
  local t = string.format('%.17g', r)
  if not string.find(t, '[%.eEn]') then t = t .. '.0' end
  return t
end

-- Returns the data with `qkey` (a JSON string token) incremented by `by` (a JSON number), or
-- nil and a reason when the existing member is not a number.
local function incremented(doc, qkey, by)
  local vstart, vend = find_member(doc, qkey)
  if not vstart then
    if doc == '{}' then return '{' .. qkey .. ':' .. by .. '}' end
    return string.sub(doc, 1, -2) .. ',' .. qkey .. ':' .. by .. '}'
  end
  local sum, why = add_number(string.sub(doc, vstart, vend), by)
  if not sum then return nil, why end
  return string.sub(doc, 1, vstart - 1) .. sum .. string.sub(doc, vend + 1)
end

local function next_version(v)
  return string.format('%.0f', tonumber(v) + 1)
end
"""

# KEYS: record, index[, replay marker]. ARGV: now, data, expires_at, pexpire_ms, member.
CREATE: Final = (
    _COMMON
    + r"""
local seen = replayed(KEYS[3])
if seen then return seen end
local now = tonumber(ARGV[1])
local cur = read(KEYS[1])
if is_live(cur, now) then return {'exists', cur[1], cur[2], cur[3]} end
put(KEYS[1], KEYS[2], ARGV[5], ARGV[2], '1', ARGV[3], ARGV[4])
return applied(KEYS[3], {'ok'})
"""
)

# KEYS: record, index[, replay marker].
# ARGV: now, data, expires_at, pexpire_ms, member, expected, new.
REPLACE: Final = (
    _COMMON
    + r"""
local seen = replayed(KEYS[3])
if seen then return seen end
local now = tonumber(ARGV[1])
local cur = read(KEYS[1])
if not is_live(cur, now) then return {'conflict'} end
if cur[2] ~= ARGV[6] then return {'conflict', cur[1], cur[2], cur[3]} end
put(KEYS[1], KEYS[2], ARGV[5], ARGV[2], ARGV[7], ARGV[3], ARGV[4])
return applied(KEYS[3], {'ok'})
"""
)

# KEYS: record, index[, replay marker]. ARGV: now, member, expected ('' for unconditional).
DELETE: Final = (
    _COMMON
    + r"""
local seen = replayed(KEYS[3])
if seen then return seen end
local now = tonumber(ARGV[1])
local cur = read(KEYS[1])
if not is_live(cur, now) then
  if ARGV[3] == '' then return {'absent'} end
  return {'conflict'}
end
if ARGV[3] ~= '' and cur[2] ~= ARGV[3] then return {'conflict', cur[1], cur[2], cur[3]} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return applied(KEYS[3], {'ok'})
"""
)

# KEYS: record, index[, replay marker].
# ARGV: now, member, field (JSON string), by (JSON number), data if created, expires_at if
#       created, pexpire_ms if created.
INCREMENT: Final = (
    _COMMON
    + _JSON_HELPERS
    + r"""
local seen = replayed(KEYS[3])
if seen then return seen end
local now = tonumber(ARGV[1])
local cur = read(KEYS[1])
if is_live(cur, now) then
  local doc, why = incremented(cur[1], ARGV[3], ARGV[4])
  if not doc then return redis.error_reply(INVALID .. 'field ' .. ARGV[3] .. ' ' .. why) end
  local v = next_version(cur[2])
  redis.call('HSET', KEYS[1], 'd', doc, 'v', v)
  relist(KEYS[1], KEYS[2], ARGV[2])
  return applied(KEYS[3], {'ok', doc, v, cur[3]})
end
put(KEYS[1], KEYS[2], ARGV[2], ARGV[5], '1', ARGV[6], ARGV[7])
return applied(KEYS[3], {'ok', ARGV[5], '1', ARGV[6]})
"""
)

# KEYS: index. ARGV: now, record key prefix, first bound, second bound, limit, descending.
# Walks the index from the first bound, skipping records that are logically expired and
# removing members whose hash Redis already deleted, until limit + 1 live records are seen.
QUERY: Final = (
    _COMMON
    + r"""
local now = tonumber(ARGV[1])
local base = ARGV[2]
local first, second = ARGV[3], ARGV[4]
local limit = tonumber(ARGV[5])
local command = 'ZRANGEBYLEX'
if ARGV[6] == '1' then command = 'ZREVRANGEBYLEX' end
local batch = limit + 1
local out = {'0'}
local found = 0
while true do
  local members = redis.call(command, KEYS[1], first, second, 'LIMIT', 0, batch)
  for _, member in ipairs(members) do
    local cur = redis.call('HMGET', base .. member, 'd', 'v', 'e')
    if not cur[2] then
      redis.call('ZREM', KEYS[1], member)
    elseif is_live(cur, now) then
      if found == limit then
        out[1] = '1'
        return out
      end
      found = found + 1
      out[#out + 1] = member
      out[#out + 1] = cur[1]
      out[#out + 1] = cur[2]
      out[#out + 1] = cur[3]
    end
  end
  if #members < batch then return out end
  first = '(' .. members[#members]
end
"""
)

# KEYS: record_1, index_1, record_2, index_2, ...[, replay marker]
# ARGV: now, n, then 9 per item: kind (C R D K I), member, expected ('' for none),
#       new version, data, expires_at, pexpire_ms, field (JSON string), by (JSON number).
TRANSACT: Final = (
    _COMMON
    + _JSON_HELPERS
    + r"""
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local marker = KEYS[2 * n + 1]
local seen = replayed(marker)
if seen then return seen end
local items = {}
for i = 1, n do
  local a = 2 + (i - 1) * 9
  items[i] = {
    kind = ARGV[a + 1], member = ARGV[a + 2], expected = ARGV[a + 3], new = ARGV[a + 4],
    d = ARGV[a + 5], e = ARGV[a + 6], px = ARGV[a + 7], field = ARGV[a + 8], by = ARGV[a + 9],
    key = KEYS[2 * i - 1], index = KEYS[2 * i],
  }
  items[i].cur = read(items[i].key)
  items[i].live = is_live(items[i].cur, now)
end

local function conflict(i, reason, it)
  if it.live then
    return {'conflict', tostring(i - 1), reason, it.cur[1], it.cur[2], it.cur[3]}
  end
  return {'conflict', tostring(i - 1), reason}
end

for i = 1, n do
  local it = items[i]
  local k = it.kind
  if k == 'C' then
    if it.live then return conflict(i, 'exists', it) end
  elseif k == 'R' or (k == 'D' and it.expected ~= '') or (k == 'K' and it.expected ~= '') then
    if not it.live then return conflict(i, 'absent', it) end
    if it.cur[2] ~= it.expected then return conflict(i, 'version', it) end
  elseif k == 'K' then
    if it.live then return conflict(i, 'exists', it) end
  elseif k == 'I' and it.live then
    local doc, why = incremented(it.cur[1], it.field, it.by)
    if not doc then
      return redis.error_reply(INVALID .. 'item ' .. (i - 1) .. ': field ' .. it.field .. ' '
        .. why)
    end
    it.doc = doc
  end
end

local out = {'ok'}
for i = 1, n do
  local it = items[i]
  local k = it.kind
  if k == 'C' then
    put(it.key, it.index, it.member, it.d, '1', it.e, it.px)
    out[#out + 1] = ''; out[#out + 1] = '1'; out[#out + 1] = it.e
  elseif k == 'R' then
    put(it.key, it.index, it.member, it.d, it.new, it.e, it.px)
    out[#out + 1] = ''; out[#out + 1] = it.new; out[#out + 1] = it.e
  elseif k == 'D' then
    if it.live then
      redis.call('DEL', it.key)
      redis.call('ZREM', it.index, it.member)
    end
    out[#out + 1] = ''; out[#out + 1] = ''; out[#out + 1] = ''
  elseif k == 'K' then
    out[#out + 1] = ''; out[#out + 1] = ''; out[#out + 1] = ''
  else
    if it.live then
      local v = next_version(it.cur[2])
      redis.call('HSET', it.key, 'd', it.doc, 'v', v)
      relist(it.key, it.index, it.member)
      out[#out + 1] = it.doc; out[#out + 1] = v; out[#out + 1] = it.cur[3]
    else
      put(it.key, it.index, it.member, it.d, '1', it.e, it.px)
      out[#out + 1] = it.d; out[#out + 1] = '1'; out[#out + 1] = it.e
    end
  end
end
return applied(marker, out)
"""
)

SCRIPTS: Final = {
    "create": CREATE,
    "replace": REPLACE,
    "delete": DELETE,
    "increment": INCREMENT,
    "query": QUERY,
    "transact": TRANSACT,
}
"""Script source by operation name."""
