-- KEYS: 1 the room's id counter, 2 its recent cache, 3 the cache's size in bytes,
--       4 the layer's group channel
-- ARGV: 1 id floor, 2 fresh ('1': the floor includes the database's last id),
--       3 most messages cached, 4 most bytes cached, 5 key ttl (ms),
--       6-8 the JSON frame cut at id and ts, 9 the layer message up to its "id" value
--       ('' when the caller publishes), 10 the "json" key, packed
-- Five commands a message (INCR, TIME, ZADD, INCRBY, PUBLISH): the cache is trimmed to its
-- bounds, and the keys' TTL renewed, on every 16th id (and on a room's first), so it may
-- hold up to 15 messages more than its bounds between trims.
local id = redis.call('INCR', KEYS[1])
local renew = id % 16 == 1
if id == 1 and ARGV[2] ~= '1' then
  redis.call('DEL', KEYS[1])
  return -1
end
local floor = tonumber(ARGV[1])
if id <= floor then
  id = floor + 1
  redis.call('SET', KEYS[1], string.format('%d', id))
  renew = true
end
local now = redis.call('TIME')
local ts = string.format('%d', now[1] * 1000 + math.floor(now[2] / 1000))
local frame = ARGV[6] .. string.format('%d', id) .. ARGV[7] .. ts .. ARGV[8]
redis.call('ZADD', KEYS[2], id, frame)
local size = redis.call('INCRBY', KEYS[3], #frame)
if renew then
  local count = redis.call('ZCARD', KEYS[2])
  local most, bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
  if count > most then  -- the oldest beyond the count, at once
    local popped, freed = redis.call('ZPOPMIN', KEYS[2], count - most), 0
    for i = 1, #popped, 2 do
      freed = freed + #popped[i]
    end
    size = redis.call('DECRBY', KEYS[3], freed)
    count = most
  end
  while count > 1 and size > bytes do
    size = redis.call('DECRBY', KEYS[3], #redis.call('ZPOPMIN', KEYS[2])[1])
    count = count - 1
  end
  for i = 1, 3 do
    redis.call('PEXPIRE', KEYS[i], ARGV[5])
  end
end
if ARGV[9] ~= '' then
  redis.call('PUBLISH', KEYS[4], ARGV[9] .. cmsgpack.pack(id) .. ARGV[10] .. cmsgpack.pack(frame))
end
return {id, tonumber(ts)}
