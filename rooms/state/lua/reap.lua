-- KEYS: 1 process deadlines, 2 the dead process's groups, 3 active rooms
-- ARGV: 1 the dead process id, 2 members hash key prefix
-- Only the first reaper of a process gets its members back (ZREM returns 1 once).
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 and ARGV[3] ~= 'self' then
  return {}
end
local gone = {}
for _, group in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[2] .. group
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    if cjson.decode(fields[i + 1]).p == ARGV[1] then
      redis.call('HDEL', key, fields[i])
      table.insert(gone, fields[i + 1])
    end
  end
  if redis.call('HLEN', key) == 0 then
    redis.call('HDEL', KEYS[3], group)
  end
end
redis.call('DEL', KEYS[2])
return gone
