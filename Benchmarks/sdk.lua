-- wrk script: the small chat completion of post.lua with the header lines the OpenAI Python SDK
-- (3.57, over httpx) sends, as captured (wrk adds Host and Content-Length; the harness adds the
-- bearer token with -H). A real client's head, where post.lua's is the smallest that works.
wrk.method = "POST"
wrk.headers["Accept-Encoding"] = "gzip, deflate"
wrk.headers["Connection"] = "keep-alive"
wrk.headers["accept"] = "application/json"
wrk.headers["content-type"] = "application/json"
wrk.headers["user-agent"] = "OpenAI/Python 3.57.0"
wrk.headers["x-stainless-lang"] = "python"
wrk.headers["x-stainless-package-version"] = "3.57.0"
wrk.headers["x-stainless-os"] = "Linux"
wrk.headers["x-stainless-arch"] = "x64"
wrk.headers["x-stainless-runtime"] = "CPython"
wrk.headers["x-stainless-runtime-version"] = "3.11.7"
wrk.headers["x-stainless-async"] = "false"
wrk.headers["x-stainless-retry-count"] = "0"
wrk.headers["x-stainless-read-timeout"] = "600"
wrk.body = '{"model":"chat-default","messages":[{"role":"user","content":"Open the gate."}]}'

done = function(summary, latency, requests)
  io.write(string.format("p99.9_us %d\n", latency:percentile(99.9)))
end
