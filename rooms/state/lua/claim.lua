-- KEYS: 1 members hash, 2 this process's groups, 3 active rooms
-- ARGV: 1 nickname key, 2 member entry, 3 group, 4 room name
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return 1
