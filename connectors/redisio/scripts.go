package redisio

// Lua scripts. Each one touches the keys of a single cluster hash slot (all
// declared in KEYS), so it runs atomically on Redis, Redis Cluster and
// miniredis alike. They are sent with EVAL rather than EVALSHA inside
// pipelines: a pipelined EVALSHA that meets an empty script cache (restart,
// failover, SCRIPT FLUSH) fails with NOSCRIPT after the commands around it
// already ran, and replaying part of a batch would break per-user ordering.
// The bodies are short; the server caches their compiled form by SHA.

// scriptDeviceRegister writes a device record and reports what it replaced.
//
//	KEYS[1] device record
//	ARGV    user, token, platform, topic, updated_at, then alias type/value pairs
//	returns {old user, old token, old updated_at, (type, replaced value)...}
//	        with "" for a missing old value.
//
// An empty alias value removes that alias type.
const scriptDeviceRegister = `
local k = KEYS[1]
local old = redis.call('HMGET', k, 'user', 'token', 'updated_at')
redis.call('HSET', k, 'user', ARGV[1], 'token', ARGV[2], 'platform', ARGV[3], 'updated_at', ARGV[5])
if ARGV[4] == '' then redis.call('HDEL', k, 'topic') else redis.call('HSET', k, 'topic', ARGV[4]) end
local out = {old[1] or '', old[2] or '', old[3] or ''}
for i = 6, #ARGV, 2 do
  local f = 'alias:' .. ARGV[i]
  local prev = redis.call('HGET', k, f)
  if prev ~= ARGV[i+1] then
    if ARGV[i+1] == '' then redis.call('HDEL', k, f) else redis.call('HSET', k, f, ARGV[i+1]) end
    if prev then out[#out+1] = ARGV[i]; out[#out+1] = prev end
  end
end
return out
`

// scriptUserRegister stores a device in its user's hash and replaces the
// user's tags. (A register without tags is a plain HSET.)
//
//	KEYS[1] user devices hash, KEYS[2] user tags set
//	ARGV    device id, device JSON, tags...
//	returns the tags the user lost.
const scriptUserRegister = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local removed = {}
for _, t in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not keep[t] then removed[#removed+1] = t end
end
redis.call('DEL', KEYS[2])
for i = 3, #ARGV do redis.call('SADD', KEYS[2], ARGV[i]) end
return removed
`

// scriptDeviceUnregister deletes a device record unless another user owns
// the device now.
//
//	KEYS[1] device record
//	ARGV    user
//	returns {"0"} when kept, {"1", (type, value)...} with the aliases it
//	        dropped when deleted.
const scriptDeviceUnregister = `
local owner = redis.call('HGET', KEYS[1], 'user')
if owner and owner ~= ARGV[1] then return {'0'} end
local out = {'1'}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 6) == 'alias:' then
    out[#out+1] = string.sub(all[i], 7); out[#out+1] = all[i+1]
  end
end
redis.call('DEL', KEYS[1])
return out
`

// scriptUserDeviceDelete removes a device from a user's hash only if the
// stored entry is still the one the caller saw (compare and delete).
//
//	KEYS[1] user devices hash
//	ARGV    device id, token, updated_at ("" matches any)
//	returns 1 when it removed the entry, else 0.
const scriptUserDeviceDelete = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local ok, d = pcall(cjson.decode, v)
if not ok or type(d) ~= 'table' or d.token ~= ARGV[2] then return 0 end
if ARGV[3] ~= '' and d.updated_at ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
`

// scriptDeviceDropToken forgets a device's owner and token if its token is
// still the given one. Alias fields stay, so a later register of the device
// still knows which alias sets it must leave.
//
//	KEYS[1] device record
//	ARGV    token
//	returns the owner it dropped, or "" when the token no longer matches.
const scriptDeviceDropToken = `
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return '' end
local owner = redis.call('HGET', KEYS[1], 'user') or ''
redis.call('HDEL', KEYS[1], 'user', 'token', 'platform', 'topic', 'updated_at')
return owner
`
