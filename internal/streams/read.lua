#!lua
-- Reads where a stream is, and the entries a socket is missing
-- (docs/protocol.md section 6). Writes only a stream that has no meta, or
-- whose meta was written on another run of Redis: it starts a new epoch, so
-- the position handed out is one the writer continues.
--
-- KEYS[1] the run key (proto.RunKey), KEYS[2] the stream, KEYS[3] its meta
-- ARGV[1] the reader's epoch ('' = none)
-- ARGV[2] the stream ID after which to read ('' = read no entries)
-- ARGV[3] the reader's offset
-- ARGV[4] the most entries the reader may take
-- ARGV[5] a fresh random epoch ([0-9a-z])
-- ARGV[6] the meta's TTL, s
-- ARGV[7] '1' to check the run against the server's own run id and
--         replication id (on a Redis Cluster), 'r' against its replication
--         id only (on one Redis): see publish.lua
-- ARGV[8] the most entries to return ('0' = no bound)
-- ARGV[9] the most bytes to return, each entry counted as the lengths of
--         its field values plus ARGV[10]; the first entry always ('0' =
--         no bound)
-- Returns {epoch, top offset, time of the top entry in ms, entries,
-- oldest}: entries are XRANGE's, read only when the reader's epoch is the
-- stream's and it is 1 to ARGV[4] entries behind the top: the first after
-- it, as many as ARGV[8] and ARGV[9] let through. oldest is the ID of the
-- stream's oldest entry when entries were to be read and the first is not
-- the one after the reader's offset ('' otherwise, or for no entry): a
-- stream trimmed past it, or a reader's ID whose time is not its entry's.
local run = redis.call('GET', KEYS[1])
local check = ARGV[7]
if check == 'r' and run then
  -- As in publish.lua: on one Redis a promotion changes the replication
  -- id, the run's second half.
  local half = string.sub(run, 17)
  if half == '' or not string.find(redis.call('INFO', 'replication'), 'master_replid:' .. half, 1, true) then check = '1' end
end
if check == '1' or not run then
  -- As in publish.lua: the server's own run, on a cluster always, on one
  -- Redis after a promotion, and whenever none is recorded.
  local id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
  local repl = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
  local live = id and repl and (string.sub(id, 1, 16) .. string.sub(repl, 1, 16))
  if live and run ~= live then
    run = live
    redis.call('SET', KEYS[1], run)
  end
end
if not run then
  run = ARGV[5]
  redis.call('SET', KEYS[1], run)
end
local m = redis.call('HMGET', KEYS[3], 'e', 's', 't', 'r')
local ep, s, t = m[1], m[2], m[3]
if not ep or not s or not t or m[4] ~= run then
  local tm = redis.call('TIME')
  ep, s = ARGV[5], '0'
  t = string.format('%d', tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000))
  redis.call('DEL', KEYS[2])
  -- Without 'x' (when the stream's TTLs were last set), so that the next
  -- publish sets them on the stream it makes again.
  redis.call('HDEL', KEYS[3], 'x')
  redis.call('HSET', KEYS[3], 'e', ep, 's', s, 't', t, 'r', run)
end
redis.call('EXPIRE', KEYS[3], ARGV[6])
local entries, oldest = {}, ''
if ARGV[1] == ep and ARGV[2] ~= '' then
  local behind = tonumber(s) - tonumber(ARGV[3])
  if behind > 0 and behind <= tonumber(ARGV[4]) then
    local want, budget = behind, tonumber(ARGV[9]) or 0
    local most = tonumber(ARGV[8]) or 0
    if most > 0 and most < want then
      want = most
    end
    if budget <= 0 then
      entries = redis.call('XRANGE', KEYS[2], '(' .. ARGV[2], '+', 'COUNT', want)
    else
      -- In steps, so that a budget of a few large entries does not read
      -- a thousand of them.
      local over, size, from, full = tonumber(ARGV[10]) or 0, 0, '(' .. ARGV[2], false
      while not full and #entries < want do
        local got = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', math.min(want - #entries, 64))
        if #got == 0 then
          break
        end
        for _, e in ipairs(got) do
          local n, f = over, e[2]
          for j = 2, #f, 2 do
            n = n + #f[j]
          end
          if #entries > 0 and size + n > budget then
            full = true
            break
          end
          size = size + n
          entries[#entries + 1] = e
        end
        from = '(' .. got[#got][1]
      end
    end
    local nxt = '-' .. string.format('%d', tonumber(ARGV[3]) + 1)
    if #entries == 0 or string.sub(entries[1][1], -#nxt) ~= nxt then
      local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
      if #head > 0 then
        oldest = head[1][1]
      end
    end
  end
end
return {ep, s, t, entries, oldest}
