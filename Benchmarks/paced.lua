-- wrk script: post.lua's request, each connection waiting 2 ms before its next request, so the
-- offered rate is about connections / (2 ms + latency): a fixed, partial load (bench.py picks
-- the connections for half of Portcullis's measured maximum).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"chat-default","messages":[{"role":"user","content":"Open the gate."}]}'
delay = function() return 2 end

done = function(summary, latency, requests)
  io.write(string.format("p99.9_us %d\n", latency:percentile(99.9)))
end
