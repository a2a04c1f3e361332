-- KEYS: 1 the user's connections (zset: channel -> deadline, ms)
-- ARGV: 1 the channel, 2 the most connections, 3 ttl (ms)
-- Drops connections whose process stopped renewing them; counts this one in if there is room.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
