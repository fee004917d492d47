-- wrk script: a small non-streaming chat completion.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"chat-default","messages":[{"role":"user","content":"Open the gate."}]}'
