-- KEYS: 1 members hash, 2 this process's groups, 3 active rooms
-- ARGV: 1 nickname key, 2 member entry, 3 group, 4 room name, 5 claimed at (ms),
--       6 '1': take the name from a later claim
-- Returns {1, the entry it was taken from or ''} when the name is this entry's again,
-- {2, ''} when it still was, {0, the holder's entry} when another claim keeps it.
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and held ~= ARGV[2] then
  local since = cjson.decode(held).t or 0
  if ARGV[6] ~= '1' or since <= tonumber(ARGV[5]) then
    return {0, held}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
if held == ARGV[2] then
  return {2, ''}
end
return {1, held or ''}
