-- KEYS: 1 members hash, 2 active rooms; ARGV: 1 nickname key, 2 member entry, 3 group
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[2], ARGV[3])
end
