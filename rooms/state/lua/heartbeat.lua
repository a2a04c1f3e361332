-- KEYS: 1 process deadlines, 2 epoch; ARGV: 1 process id, 2 ttl in ms, 3 a new epoch
-- Renews this process's deadline; returns whether it was missing, the epoch (set anew
-- if Redis lost it), and the processes whose deadline has passed, leased to the caller.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local missing = redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
-- A dead process is this caller's to reap for one ttl more (the others skip it meanwhile):
-- its members' leaves are announced before their names are freed (RedisPresence._reap).
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms)
for _, id in ipairs(dead) do
  redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), id)
end
return {missing, epoch, dead}
