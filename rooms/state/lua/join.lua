-- KEYS: 1 the room's id counter, 2 the layer's group channel
-- ARGV: 1 id floor, 2 fresh ('1': the floor includes the database's last id),
--       3 key ttl (ms), 4 the layer message up to its "last" value ('' when the caller
--       publishes)
local last = redis.call('GET', KEYS[1])
if not last and ARGV[2] ~= '1' then
  return -1
end
last = tonumber(last or '0')
local floor = tonumber(ARGV[1])
if last < floor then
  last = floor
  redis.call('SET', KEYS[1], string.format('%d', last), 'PX', ARGV[3])
elseif last > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('PUBLISH', KEYS[2], ARGV[4] .. cmsgpack.pack(last))
end
return last
