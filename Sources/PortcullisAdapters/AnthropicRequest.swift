import PortcullisJSON

/// Why an OpenAI request cannot go to Anthropic's Messages API as it is (a 400 for the client).
public struct TranslationError: Error, Equatable, Sendable {
    public let message: String
    public init(_ m: String) { message = m }
}

/// OpenAI chat completions → Anthropic Messages (request side). Pure; any thread.
///
/// Translated: `system`/`developer` messages lifted into `system` (joined by a blank line);
/// user/assistant turns with string or text-part content, consecutive same-role turns merged;
/// `max_tokens` / `max_completion_tokens` (Anthropic requires one: `defaultMaxTokens` when
/// absent); `temperature`, `top_p`; `stop` → `stop_sequences`; `stream`; `user` →
/// `metadata.user_id`. Dropped (no Anthropic equivalent, no effect on the answer's meaning):
/// `stream_options`, `logprobs`/`top_logprobs` when false/absent, `presence_penalty`,
/// `frequency_penalty`, `seed`, `service_tier`, `parallel_tool_calls`, `store`, `metadata`.
/// Refused (400): `n` > 1, `logprobs: true`, and — in this first version — tools, tool messages
/// and image parts (see `Docs/adapters.md` when they land). Unknown fields are refused rather
/// than silently mistranslated.
public enum AnthropicRequest {
    static let dropped: Set<String> = ["stream_options", "presence_penalty", "frequency_penalty", "seed", "service_tier",
                                       "parallel_tool_calls", "store", "metadata", "logprobs", "top_logprobs"]

    /// A translated request: the Messages body, and what the response side needs to know.
    public struct Translated: Sendable {
        public let body: [UInt8]
        public let stream: Bool
        /// The OpenAI request asked for `stream_options.include_usage`.
        public let includeUsage: Bool
    }

    /// `model`: the model to ask for; nil keeps the request's own.
    public static func translateRequest(_ body: [UInt8], model: String?, defaultMaxTokens: Int) -> Result<Translated, TranslationError> {
        guard case .object(let req)? = try? JSONReader.parse(body) else {
            return .failure(TranslationError("The request body is not a valid JSON object."))
        }
        guard let m = model ?? req["model"]?.string else { return .failure(TranslationError("The request body has no \"model\".")) }
        return translate(body, model: m, defaultMaxTokens: defaultMaxTokens).map {
            Translated(body: $0, stream: req["stream"] == .bool(true),
                       includeUsage: req["stream_options"]?.objectValue?["include_usage"] == .bool(true))
        }
    }

    public static func translate(_ body: [UInt8], model: String, defaultMaxTokens: Int) -> Result<[UInt8], TranslationError> {
        guard case .object(let req)? = try? JSONReader.parse(body) else {
            return .failure(TranslationError("The request body is not a valid JSON object."))
        }
        var system: [String] = []
        var turns: [(role: String, text: String)] = []
        var out: [(String, JSONValue)] = [("model", .string(model))]
        var maxTokens: JSONValue = .int(defaultMaxTokens)
        var extra: [(String, JSONValue)] = []

        for m in req.members {
            switch m.name {
            case "model": continue
            case "messages":
                guard case .array(let msgs) = m.value else { return .failure(TranslationError("\"messages\" must be an array.")) }
                for (i, msg) in msgs.enumerated() {
                    guard case .object(let o) = msg, let role = o["role"]?.string else {
                        return .failure(TranslationError("messages[\(i)] has no role."))
                    }
                    if o["tool_calls"] != nil || role == "tool" || role == "function" {
                        return .failure(TranslationError("Tool calls cannot be sent to this model yet."))
                    }
                    guard let text = Self.text(o["content"]) else {
                        return .failure(TranslationError("messages[\(i)].content must be text for this model (images are not supported yet)."))
                    }
                    switch role {
                    case "system", "developer": system.append(text)
                    case "user", "assistant":
                        if let last = turns.last, last.role == role { turns[turns.count - 1].text += "\n\n" + text }
                        else { turns.append((role, text)) }
                    default: return .failure(TranslationError("messages[\(i)] has an unknown role '\(role)'."))
                    }
                }
            case "max_tokens", "max_completion_tokens": maxTokens = m.value
            case "temperature", "top_p", "stream": extra.append((m.name, m.value))
            case "stop":
                switch m.value {
                case .string(let s): extra.append(("stop_sequences", .array([.string(s)])))
                case .array: extra.append(("stop_sequences", m.value))
                case .null: break
                default: return .failure(TranslationError("\"stop\" must be a string or a list of strings."))
                }
            case "user":
                if let u = m.value.string { extra.append(("metadata", .obj([("user_id", .string(u))]))) }
            case "n":
                if let n = m.value.number, n > 1 { return .failure(TranslationError("n > 1 is not supported by this model.")) }
            case "tools", "tool_choice", "functions", "function_call":
                if m.value != .null { return .failure(TranslationError("Tools cannot be sent to this model yet.")) }
            case "logprobs":
                if m.value == .bool(true) { return .failure(TranslationError("logprobs are not supported by this model.")) }
            default:
                if Self.dropped.contains(m.name) { continue }
                return .failure(TranslationError("The field '\(m.name)' cannot be translated for this model."))
            }
        }
        guard !turns.isEmpty else { return .failure(TranslationError("The request has no user or assistant message.")) }
        out.append(("max_tokens", maxTokens))
        if !system.isEmpty { out.append(("system", .string(system.joined(separator: "\n\n")))) }
        out += extra.filter { $0.0 == "stream" }
        out.append(("messages", .array(turns.map { .obj([("role", .string($0.role)), ("content", .string($0.text))]) })))
        out += extra.filter { $0.0 != "stream" }
        return .success(JSONWriter.bytes(.obj(out)))
    }

    /// A message's content as text: a string, or text parts joined; nil for anything else.
    static func text(_ v: JSONValue?) -> String? {
        switch v {
        case .string(let s)?: return s
        case .array(let parts)?:
            var out: [String] = []
            for p in parts {
                guard case .object(let o) = p, o["type"]?.string == "text", let t = o["text"]?.string else { return nil }
                out.append(t)
            }
            return out.joined()
        default: return nil
        }
    }
}
