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
/// Also translated: `image_url` parts (https URLs, base64 data URLs) → image blocks; `tools` →
/// Anthropic tools (`parameters` → `input_schema`), `tool_choice`; assistant `tool_calls` →
/// `tool_use` blocks; `tool` messages → `tool_result` blocks in a user turn.
/// Refused (400): `n` > 1, `logprobs: true`, the legacy `functions` API, and unknown fields
/// (never silently mistranslated). See `Docs/adapters.md`.
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

    /// One turn being built: its role and content blocks (text blocks of one turn are joined).
    struct Turn { var role: String; var blocks: [JSONValue] }

    public static func translate(_ body: [UInt8], model: String, defaultMaxTokens: Int) -> Result<[UInt8], TranslationError> {
        guard case .object(let req)? = try? JSONReader.parse(body) else {
            return .failure(TranslationError("The request body is not a valid JSON object."))
        }
        var system: [String] = []
        var turns: [Turn] = []
        var out: [(String, JSONValue)] = [("model", .string(model))]
        var maxTokens: JSONValue = .int(defaultMaxTokens)
        var extra: [(String, JSONValue)] = []

        func add(_ role: String, _ blocks: [JSONValue]) {
            if let last = turns.last, last.role == role { turns[turns.count - 1].blocks += blocks } else { turns.append(Turn(role: role, blocks: blocks)) }
        }

        for m in req.members {
            switch m.name {
            case "model": continue
            case "messages":
                guard case .array(let msgs) = m.value else { return .failure(TranslationError("\"messages\" must be an array.")) }
                for (i, msg) in msgs.enumerated() {
                    guard case .object(let o) = msg, let role = o["role"]?.string else {
                        return .failure(TranslationError("messages[\(i)] has no role."))
                    }
                    switch role {
                    case "system", "developer":
                        guard let text = Self.text(o["content"]) else {
                            return .failure(TranslationError("messages[\(i)]: a system message must be text."))
                        }
                        system.append(text)
                    case "user", "assistant":
                        var blocks: [JSONValue] = []
                        if o["content"] != nil && o["content"] != .null {
                            switch Self.blocks(o["content"]) {
                            case .success(let b): blocks = b
                            case .failure(let e): return .failure(TranslationError("messages[\(i)]: \(e.message)"))
                            }
                        }
                        if role == "assistant", case .array(let calls)? = o["tool_calls"] {
                            for c in calls {
                                guard case .object(let call) = c, let id = call["id"]?.string,
                                      let f = call["function"]?.objectValue, let name = f["name"]?.string else {
                                    return .failure(TranslationError("messages[\(i)].tool_calls must have an id and a function name."))
                                }
                                var input: JSONValue = .obj([])
                                if let args = f["arguments"]?.string, !args.isEmpty {
                                    guard let parsed = try? JSONReader.parse(Array(args.utf8)), case .object = parsed else {
                                        return .failure(TranslationError("messages[\(i)].tool_calls: arguments must be a JSON object."))
                                    }
                                    input = parsed
                                }
                                blocks.append(.obj([("type", .string("tool_use")), ("id", .string(id)), ("name", .string(name)), ("input", input)]))
                            }
                        }
                        guard !blocks.isEmpty else { return .failure(TranslationError("messages[\(i)] has no content.")) }
                        add(role, blocks)
                    case "tool":
                        guard let id = o["tool_call_id"]?.string, let text = Self.text(o["content"]) else {
                            return .failure(TranslationError("messages[\(i)]: a tool message needs tool_call_id and text content."))
                        }
                        add("user", [.obj([("type", .string("tool_result")), ("tool_use_id", .string(id)), ("content", .string(text))])])
                    default:
                        return .failure(TranslationError("messages[\(i)] has an unsupported role '\(role)'."))
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
            case "tools":
                guard case .array(let tools) = m.value else { if m.value == .null { continue }; return .failure(TranslationError("\"tools\" must be a list.")) }
                var outTools: [JSONValue] = []
                for t in tools {
                    guard case .object(let tool) = t, tool["type"]?.string == "function", let f = tool["function"]?.objectValue,
                          let name = f["name"]?.string else {
                        return .failure(TranslationError("Only function tools can be sent to this model."))
                    }
                    var members: [(String, JSONValue)] = [("name", .string(name))]
                    if let d = f["description"] { members.append(("description", d)) }
                    members.append(("input_schema", f["parameters"] ?? .obj([("type", .string("object")), ("properties", .obj([]))])))
                    outTools.append(.obj(members))
                }
                extra.append(("tools", .array(outTools)))
            case "tool_choice":
                switch m.value {
                case .string("auto"): extra.append(("tool_choice", .obj([("type", .string("auto"))])))
                case .string("required"): extra.append(("tool_choice", .obj([("type", .string("any"))])))
                case .string("none"): extra.append(("tool_choice", .obj([("type", .string("none"))])))
                case .object(let c):
                    guard let name = c["function"]?.objectValue?["name"]?.string else {
                        return .failure(TranslationError("tool_choice must name a function."))
                    }
                    extra.append(("tool_choice", .obj([("type", .string("tool")), ("name", .string(name))])))
                case .null: break
                default: return .failure(TranslationError("tool_choice cannot be translated for this model."))
                }
            case "functions", "function_call":
                if m.value != .null { return .failure(TranslationError("The legacy functions API cannot be sent to this model: use tools.")) }
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
        out.append(("messages", .array(turns.map { .obj([("role", .string($0.role)), ("content", Self.content($0.blocks))]) })))
        out += extra.filter { $0.0 != "stream" }
        return .success(JSONWriter.bytes(.obj(out)))
    }

    /// A turn's blocks as Messages content: adjacent text blocks joined by a blank line; a turn
    /// that is only text is a plain string.
    static func content(_ blocks: [JSONValue]) -> JSONValue {
        var merged: [JSONValue] = []
        for b in blocks {
            if b.objectValue?["type"]?.string == "text", let t = b.objectValue?["text"]?.string,
               let last = merged.last?.objectValue, last["type"]?.string == "text", let lt = last["text"]?.string {
                merged[merged.count - 1] = .obj([("type", .string("text")), ("text", .string(lt + "\n\n" + t))])
            } else {
                merged.append(b)
            }
        }
        if merged.count == 1, let t = merged[0].objectValue, t["type"]?.string == "text", let text = t["text"] { return text }
        return .array(merged)
    }

    /// OpenAI content (a string, or text and image_url parts) as Messages blocks.
    static func blocks(_ v: JSONValue?) -> Result<[JSONValue], TranslationError> {
        switch v {
        case .string(let s)?: return .success([.obj([("type", .string("text")), ("text", .string(s))])])
        case .array(let parts)?:
            var out: [JSONValue] = []
            var text: String? = nil
            func flush() { if let t = text { out.append(.obj([("type", .string("text")), ("text", .string(t))])); text = nil } }
            for p in parts {
                guard case .object(let o) = p else { return .failure(TranslationError("content parts must be objects.")) }
                switch o["type"]?.string {
                case "text"?:
                    guard let t = o["text"]?.string else { return .failure(TranslationError("a text part has no text.")) }
                    text = (text ?? "") + t
                case "image_url"?:
                    flush()
                    guard let url = o["image_url"]?.objectValue?["url"]?.string else {
                        return .failure(TranslationError("an image_url part has no url."))
                    }
                    guard let source = Self.imageSource(url) else {
                        return .failure(TranslationError("images must be https URLs or base64 data URLs."))
                    }
                    out.append(.obj([("type", .string("image")), ("source", source)]))
                default:
                    return .failure(TranslationError("content parts of type '\(o["type"]?.string ?? "?")' cannot be sent to this model."))
                }
            }
            flush()
            return .success(out)
        default:
            return .failure(TranslationError("content must be a string or a list of parts."))
        }
    }

    /// `data:<media>;base64,<data>` → a base64 source; `https://…` → a URL source.
    static func imageSource(_ url: String) -> JSONValue? {
        if url.hasPrefix("https://") { return .obj([("type", .string("url")), ("url", .string(url))]) }
        guard url.hasPrefix("data:"), let comma = url.firstIndex(of: ",") else { return nil }
        let meta = url[url.index(url.startIndex, offsetBy: 5)..<comma]
        guard meta.hasSuffix(";base64") else { return nil }
        let media = String(meta.dropLast(7))
        guard ["image/png", "image/jpeg", "image/gif", "image/webp"].contains(media) else { return nil }
        return .obj([("type", .string("base64")), ("media_type", .string(media)), ("data", .string(String(url[url.index(after: comma)...])))])
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
