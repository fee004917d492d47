import PortcullisJSON
import PortcullisCore
/// Builds responses in OpenAI's chat-completions wire format (see shared/fixtures/openai-*).
enum OpenAIWire {
    /// The header lines OpenAI's API adds to an answer (through its CDN) besides framing and
    /// content type, as an HTTP/1.1 client receives them: 23 lines, ~1.2 KB, two of them cookies.
    /// Values are representative, not live. Benchmarks use them to price a real provider's head.
    static let responseHeaderLines = """
        Date: Wed, 25 Nov 2026 10:00:00 GMT\r
        Connection: keep-alive\r
        access-control-expose-headers: X-Request-ID\r
        openai-organization: user-4f2a9c1d7e8b3a6c5d0e1f2a\r
        openai-processing-ms: 412\r
        openai-project: proj_Xq3v8LmN2pR7sT1uW4yZ6aBc\r
        openai-version: 2020-10-01\r
        x-envoy-upstream-service-time: 415\r
        x-ratelimit-limit-requests: 10000\r
        x-ratelimit-limit-tokens: 30000000\r
        x-ratelimit-remaining-requests: 9999\r
        x-ratelimit-remaining-tokens: 29999990\r
        x-ratelimit-reset-requests: 6ms\r
        x-ratelimit-reset-tokens: 0s\r
        x-request-id: req_8d3f0c2a4b5e6f7a8b9c0d1e2f3a4b5c\r
        strict-transport-security: max-age=31536000; includeSubDomains; preload\r
        CF-Cache-Status: DYNAMIC\r
        Set-Cookie: __cf_bm=Hk3pQ9sV2xY7zA1bC4dE6fG8hJ0kL2mN4pQ6rS8tU0v-1795600800-1.0.1.1-aB3cD5eF7gH9iJ1kL3mN5oP7qR9sT1uV3wX5yZ7aB9cD1eF3gH5iJ7kL9mN1oP3qR5sT7uV9wX1yZ3aB5cD7eF9gH1iJ3kL5mN7o; path=/; expires=Wed, 25-Nov-26 10:30:00 GMT; domain=.api.openai.com; HttpOnly; Secure; SameSite=None\r
        X-Content-Type-Options: nosniff\r
        Set-Cookie: _cfuvid=pQ7rS9tU1vW3xY5zA7bC9dE1fG3hJ5kL7mN9pQ1rS3t-1795600800123-0.0.1.1-604800000; path=/; domain=.api.openai.com; HttpOnly; Secure; SameSite=None\r
        Server: cloudflare\r
        CF-RAY: 8e8b2c1d3f4a5b6c-SJC\r
        alt-svc: h3=":443"; ma=86400\r

        """

    static let words = ["The", " gate", " is", " open", "."]

    static func token(_ i: Int) -> String { words[i % words.count] }

    static func usage(prompt: Int, completion: Int) -> String {
        "{\"prompt_tokens\":\(prompt),\"completion_tokens\":\(completion),\"total_tokens\":\(prompt + completion),\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}"
    }

    static func completion(id: String, created: UInt64, model: String, tokens: Int, prompt: Int) -> String {
        var content = ""
        for i in 0..<tokens { content += token(i) }
        return "{\"id\":\"\(id)\",\"object\":\"chat.completion\",\"created\":\(created),\"model\":\"\(model)\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"\(content)\",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":\(usage(prompt: prompt, completion: tokens)),\"service_tier\":\"default\",\"system_fingerprint\":\"fp_fake\"}"
    }

    /// Generates a streamed answer's SSE events one at a time (a long stream is never held whole).
    struct EventStream {
        let prefix: String
        let usageNull: String
        let tokens: Int
        let usageChunk: String?
        var count: Int { tokens + 3 + (usageChunk == nil ? 0 : 1) }

        init(id: String, created: UInt64, model: String, tokens: Int, prompt: Int, includeUsage: Bool) {
            prefix = "data: {\"id\":\"\(id)\",\"object\":\"chat.completion.chunk\",\"created\":\(created),\"model\":\"\(model)\",\"system_fingerprint\":\"fp_fake\",\"choices\":"
            usageNull = includeUsage ? ",\"usage\":null" : ""
            self.tokens = tokens
            usageChunk = includeUsage ? "[],\"usage\":\(OpenAIWire.usage(prompt: prompt, completion: tokens))}\n\n" : nil
        }

        /// Event `i` of `count`: role, tokens…, finish, [usage], [DONE].
        func event(_ i: Int) -> String {
            if i == 0 { return prefix + "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]\(usageNull)}\n\n" }
            if i <= tokens { return prefix + "[{\"index\":0,\"delta\":{\"content\":\"\(OpenAIWire.token(i - 1))\"},\"logprobs\":null,\"finish_reason\":null}]\(usageNull)}\n\n" }
            if i == tokens + 1 { return prefix + "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]\(usageNull)}\n\n" }
            if let u = usageChunk, i == tokens + 2 { return prefix + u }
            return "data: [DONE]\n\n"
        }
    }

    /// An OpenAI-format error with the fake's own message (malformed requests).
    static func error(status: Int, message: String) -> String {
        "{\"error\":{\"message\":\(JSONWriter.quoted(message)),\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"bad_request\"}}"
    }

    static func error(status: Int) -> String {
        let (type, code, message): (String, String, String) = switch status {
        case 400: ("invalid_request_error", "invalid_request", "The fake provider was asked to reject this request.")
        case 401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
        case 404: ("invalid_request_error", "model_not_found", "The model does not exist.")
        case 429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests per min (RPM). Please try again in 1s.")
        case 503: ("server_error", "overloaded", "The server is overloaded.")
        default: ("server_error", "server_error", "The fake provider failed as asked.")
        }
        return "{\"error\":{\"message\":\"\(message)\",\"type\":\"\(type)\",\"param\":null,\"code\":\"\(code)\"}}"
    }
}
