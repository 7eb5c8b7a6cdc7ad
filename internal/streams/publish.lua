#!lua
-- Appends dispatches to their streams and publishes them, atomically, so
-- that stored order is publish order (docs/protocol.md section 6).
--
-- KEYS[1]     the run key (proto.RunKey)
-- KEYS[2..]   per recorded target, in order: its stream, its meta hash
-- ARGV[1]     history window, ms
-- ARGV[2]     meta TTL, s
-- ARGV[3]     a fresh random epoch seed ([0-9a-z]): new epochs are seed..index
-- ARGV[4]     D, the number of dispatches
-- then per dispatch, 6 values:
--   channel, head (its JSON body without the closing brace), event, args,
--   N (the targets it records: 0 = transient, 1 for the broadcast stream),
--   kind ('u' users, 'b' broadcast)
--   and for kind 'u', N more: each user id as a JSON string (the pos key)
-- Returns the positions assigned, in target order, then the number of
-- PUBLISHes no subscriber received (see SplitResult).
local run = redis.call('GET', KEYS[1])
if not run then
  -- No run recorded (a new or flushed store): mark one; every meta of an
  -- older run then starts a new epoch.
  run = ARGV[3]
  redis.call('SET', KEYS[1], run)
end
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local window = tonumber(ARGV[1])
local metattl = tonumber(ARGV[2])
local minid = string.format('%d-0', now - window)
local k, a = 2, 5
local out = {}
local unheard = 0
for _ = 1, tonumber(ARGV[4]) do
  local channel, head, ev, args = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local n, kind = tonumber(ARGV[a + 4]), ARGV[a + 5]
  a = a + 6
  local pos = {}
  for j = 1, n do
    local sk, mk = KEYS[k], KEYS[k + 1]
    local m = redis.call('HMGET', mk, 'e', 's', 't', 'r')
    local ep, s, ms = m[1], tonumber(m[2]), tonumber(m[3])
    if not ep or not s or not ms or m[4] ~= run then
      -- The store lost this stream, or it was written on another run of
      -- Redis (a restart, a failover): a new epoch, so no position of the
      -- old one is ever taken for one of the new.
      ep = ARGV[3] .. string.format('%x', k)
      s, ms = 0, 0
      redis.call('DEL', sk)
    end
    s = s + 1
    if now > ms then ms = now end
    local id = string.format('%d-%d', ms, s)
    redis.call('XADD', sk, 'MINID', '~', minid, id, 'e', ev, 'a', args)
    redis.call('PEXPIRE', sk, window + 10000)
    redis.call('HSET', mk, 'e', ep, 's', s, 't', ms, 'r', run)
    redis.call('EXPIRE', mk, metattl)
    local p = ep .. '.' .. id
    out[#out + 1] = p
    if kind == 'b' then
      pos[1] = p
    else
      pos[j] = ARGV[a] .. ':"' .. p .. '"'
      a = a + 1
    end
    k = k + 2
  end
  local body
  if n == 0 then
    body = head .. '}'
  elseif kind == 'b' then
    body = head .. ',"bpos":"' .. pos[1] .. '"}'
  else
    body = head .. ',"pos":{' .. table.concat(pos, ',') .. '}}'
  end
  if redis.call('PUBLISH', channel, body) == 0 then
    unheard = unheard + 1
  end
end
out[#out + 1] = tostring(unheard)
return out
