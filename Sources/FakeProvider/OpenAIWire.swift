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

    /// The SSE events of a streamed answer, each a complete `data: …\n\n` block, ending in `[DONE]`.
    static func streamEvents(id: String, created: UInt64, model: String, tokens: Int, prompt: Int, includeUsage: Bool) -> [String] {
        let prefix = "data: {\"id\":\"\(id)\",\"object\":\"chat.completion.chunk\",\"created\":\(created),\"model\":\"\(model)\",\"system_fingerprint\":\"fp_fake\",\"choices\":"
        let usageNull = includeUsage ? ",\"usage\":null" : ""
        var out: [String] = []
        out.append(prefix + "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]\(usageNull)}\n\n")
        for i in 0..<tokens {
            out.append(prefix + "[{\"index\":0,\"delta\":{\"content\":\"\(token(i))\"},\"logprobs\":null,\"finish_reason\":null}]\(usageNull)}\n\n")
        }
        out.append(prefix + "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]\(usageNull)}\n\n")
        if includeUsage {
            out.append(prefix + "[],\"usage\":\(usage(prompt: prompt, completion: tokens))}\n\n")
        }
        out.append("data: [DONE]\n\n")
        return out
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
