-- wrk script: a small non-streaming chat completion.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"chat-default","messages":[{"role":"user","content":"Open the gate."}]}'

-- wrk --latency prints up to p99; the harness also wants p99.9 (microseconds).
done = function(summary, latency, requests)
  io.write(string.format("p99.9_us %d\n", latency:percentile(99.9)))
end
