import PortcullisJSON
import PortcullisCore
/// Builds responses in OpenAI's chat-completions wire format (see shared/fixtures/openai-*).
enum OpenAIWire {
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
