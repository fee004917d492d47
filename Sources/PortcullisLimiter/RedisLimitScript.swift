/// The token-bucket script run inside Redis: decides a whole batch of requests — every request
/// a worker admitted or settled during one event-loop iteration — in one call, with Redis's own
/// clock (`TIME`), so every gateway instance shares one set of buckets and one notion of time.
/// Each request is all or nothing over its own buckets; later requests in the batch see the
/// earlier ones' debits. The arithmetic mirrors `TokenBucketMath` (tested against the same
/// sequences as the memory store).
///
/// Cost per call is what matters here (Redis shares the machine's cores with the gateway), so:
/// - KEYS: every distinct bucket of the batch, once; read with one `MGET`, each written back
///   once with `SET … PX` (a bucket is a 16-byte string: level and last-update ms, two
///   little-endian doubles; a key of another type, e.g. an older release's hash, reads as full
///   and is overwritten);
/// - ARGV[1]: the batch as one MessagePack integer array (`cmsgpack.unpack`: one C call):
///   capacity and window ms per key, the number of entries, then per entry its mode
///   (1 = acquire: all or nothing; 0 = settle: add the costs unconditionally; 2 = lease: right
///   after an acquire, and only when it was admitted, take up to `cost` more whole tokens of
///   each bucket, as many as there are) and bucket count, then per bucket its key's index
///   (1-based) and cost;
/// - reply: { one byte per acquire ('0' admitted, else '0' + 1-based index of the refusing
///   bucket), each key's level when the batch began (`%.17g`, exact), the retry-after ms of
///   each refusal in order, the tokens each lease bucket got in order }. Remaining and reset per
///   bucket are not sent: the gateway replays the batch's debits from those levels
///   (`RedisLimitBackend.decode`), the same arithmetic.
public enum RedisLimitScript {
    public static let source = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local ceil, min, max = math.ceil, math.min, math.max
    local spec = cmsgpack.unpack(ARGV[1])
    local nk = #KEYS
    local stored = {}
    for i = 1, nk, 1000 do                    -- (unpack's results are bounded by Lua's C stack)
      local part = redis.call('MGET', unpack(KEYS, i, min(nk, i + 999)))
      for k = 1, #part do stored[i + k - 1] = part[k] end
    end
    local cap, win, level, start, dirty = {}, {}, {}, {}, {}
    for j = 1, nk do
      local c, w, v = spec[2 * j - 1], spec[2 * j], stored[j]
      cap[j] = c
      win[j] = w
      if v and #v == 16 then
        local tokens, ts = struct.unpack('<dd', v)
        level[j] = min(c, tokens + max(0, now - ts) * (c / w))
      else level[j] = c end
      start[j] = string.format('%.17g', level[j])
    end
    local decided, waits, grants = {}, {}, {}
    local nd, nw, ng = 0, 0, 0
    local a = 2 * nk + 2
    local refused = 0
    for r = 1, spec[2 * nk + 1] do
      local mode, n = spec[a], spec[a + 1]
      a = a + 2
      if mode == 2 then
        for i = 0, n - 1 do
          local j, take = spec[a + 2 * i], 0
          if refused == 0 and level[j] >= 1 then
            take = min(spec[a + 2 * i + 1], math.floor(level[j]))
            level[j] = level[j] - take
            dirty[j] = true
          end
          ng = ng + 1
          grants[ng] = take
        end
      else
        refused = 0
        if mode == 1 then
          for i = 0, n - 1 do
            local j, cost = spec[a + 2 * i], spec[a + 2 * i + 1]
            if level[j] < cost then
              refused = i + 1
              nw = nw + 1
              if cost > cap[j] then waits[nw] = win[j]
              else waits[nw] = max(1, ceil((cost - level[j]) / (cap[j] / win[j]))) end
              break
            end
          end
          nd = nd + 1
          decided[nd] = 48 + refused
        end
        if refused == 0 then
          for i = 0, n - 1 do
            local j = spec[a + 2 * i]
            level[j] = min(cap[j], level[j] - spec[a + 2 * i + 1])
            dirty[j] = true
          end
        end
      end
      a = a + 2 * n
    end
    for j = 1, nk do
      if dirty[j] then redis.call('SET', KEYS[j], struct.pack('<dd', level[j], now), 'PX', win[j] * 2) end
    end
    local out = {}
    for i = 1, nd, 4096 do out[#out + 1] = string.char(unpack(decided, i, min(nd, i + 4095))) end
    return {table.concat(out), start, waits, grants}
    """
}
