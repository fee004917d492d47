import PortcullisCore
import PortcullisJSON

/// Translates a Messages event stream into `chat.completion.chunk` events, one event at a time
/// (fed each complete SSE event's `data`; nothing is buffered across events). Usage is merged —
/// input tokens from `message_start`, output tokens from `message_delta` — not last-wins.
///
/// Almost every event of a stream is a `text_delta` (or, while a tool call streams, an
/// `input_json_delta`); it is translated without building values (`deltaChunk`): the strict
/// member reader validates the event and finds its members, and the text (or the arguments'
/// part) is copied as it was written, between a chunk's bytes rendered once per stream
/// (`chunkHead`). Every other event goes through the strict reader and `JSONWriter`: the chunk
/// the client reads holds the same values either way.
public struct AnthropicStreamTranslator: Sendable {
    let created: Int
    /// Emit the final usage chunk (the client asked for `stream_options.include_usage`).
    let includeUsage: Bool
    var id = "chatcmpl-anthropic" { didSet { chunkHead = renderChunkHead() } }
    var model: JSONValue = .null { didSet { chunkHead = renderChunkHead() } }
    public private(set) var inputTokens = 0
    public private(set) var outputTokens = 0
    var stopReason: String?
    public private(set) var finished = false
    /// The last `translate` took the fast path (`deltaChunk`): its output is one content chunk
    /// (a `choices` entry with a delta, `"usage":null` or no usage), which a reader of the
    /// translated stream may count without parsing.
    public private(set) var lastWasDeltaChunk = false
    /// Anthropic content-block index → OpenAI tool-call index, for tool_use blocks.
    var toolIndex: [Int: Int] = [:]
    /// A chunk event up to its delta: `data: {"id":…,"object":"chat.completion.chunk",
    /// "created":…,"model":…,"choices":[{"index":0,"delta":`. Rendered again when `id` or
    /// `model` changes (at `message_start`).
    private(set) var chunkHead: [UInt8] = []
    /// A chunk's end after its `choices` (`,"usage":null` when usage is asked for).
    private let chunkEnd: [UInt8]
    /// After the delta, for a chunk without a finish reason.
    private let openChunkTail: [UInt8]
    static let finishReasonOpen = Array(",\"logprobs\":null,\"finish_reason\":".utf8)

    public init(created: Int, includeUsage: Bool) {
        self.created = created
        self.includeUsage = includeUsage
        chunkEnd = Array((includeUsage ? ",\"usage\":null}\n\n" : "}\n\n").utf8)
        openChunkTail = Self.finishReasonOpen + Array("null}]".utf8) + chunkEnd
        chunkHead = renderChunkHead()
    }

    /// The OpenAI SSE bytes for one Anthropic event's `data` (possibly none).
    public mutating func translate(data: [UInt8]) -> [UInt8] {
        data.withUnsafeBytes { translate(data: $0) }
    }

    /// The same, for `data` read in place (`SSEDecoder.withData`).
    public mutating func translate(data: UnsafeRawBufferPointer) -> [UInt8] {
        if let out = deltaChunk(data) { lastWasDeltaChunk = true; return out }
        lastWasDeltaChunk = false
        return translateValues(data)
    }

    static let eventNames: JSONNames = ["type", "delta", "index"]
    static let deltaNames: JSONNames = ["type", "text", "partial_json"]
    static let contentBlockDelta = Array("\"content_block_delta\"".utf8)
    static let textDeltaType = Array("\"text_delta\"".utf8)
    static let inputJSONDeltaType = Array("\"input_json_delta\"".utf8)
    static let contentOpen = Array("{\"content\":".utf8)
    static let toolCallOpen = Array("{\"tool_calls\":[{\"index\":".utf8)
    static let argumentsOpen = Array(",\"function\":{\"arguments\":".utf8)
    static let toolCallClose = Array("}}]}".utf8)

    /// A `content_block_delta` event — a `text_delta`, or a tool call's `input_json_delta` —
    /// as its chunk; nil for any other event and for one the strict reader refuses (then
    /// `translateValues` decides).
    /// The event is validated whole, in one pass, by the strict member reader (`topLevelMembers`,
    /// finding the delta's members as it reads it, and refusing a repeated `type`, `delta`,
    /// `index`, `text` or `partial_json` in any spelling), so its string is a valid literal,
    /// copied as written. Other repeated names are the provider's to judge here, where
    /// `translateValues` drops such an event.
    func deltaChunk(_ b: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let (e, nested) = try? JSONReader.topLevelMembers(Self.eventNames, in: b, nestedIn: 1, Self.deltaNames),
              let type = e.member(0), Self.equal(b, type, Self.contentBlockDelta),
              let m = nested, let dt = m.member(0) else { return nil }
        if Self.equal(b, dt, Self.textDeltaType) {
            guard let text = m.member(1), b[text.lowerBound] == UInt8(ascii: "\"") else { return nil }
            return chunk(Self.contentOpen, UnsafeRawBufferPointer(rebasing: b[text]), close: [UInt8(ascii: "}")])
        }
        // A tool call's arguments: its block must have been opened (`content_block_start`), the
        // index written as 1–6 digits (0…999,999, what `AnthropicResponse.index` reads from
        // them; any other number: the strict path).
        guard Self.equal(b, dt, Self.inputJSONDeltaType), let part = m.member(2), b[part.lowerBound] == UInt8(ascii: "\""),
              let i = e.member(2), let block = DecimalDigits.value(b[i], maxDigits: 6), let k = toolIndex[Int(block)] else { return nil }
        return chunk(Self.toolCallOpen, toolCall: k, UnsafeRawBufferPointer(rebasing: b[part]), close: Self.toolCallClose)
    }

    /// `chunkHead`, `open`, (with `toolCall`: that OpenAI tool call index in decimal and
    /// `argumentsOpen`,) the literal, `close`, then the tail of a chunk without a finish reason.
    /// One array, sized once.
    func chunk(_ open: [UInt8], toolCall: Int? = nil, _ literal: UnsafeRawBufferPointer, close: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        let index = toolCall == nil ? 0 : 20 + Self.argumentsOpen.count
        out.reserveCapacity(chunkHead.count + open.count + index + literal.count + close.count + openChunkTail.count)
        out.append(contentsOf: chunkHead)
        out.append(contentsOf: open)
        if let k = toolCall {
            out.appendDecimal(Int64(k))
            out.append(contentsOf: Self.argumentsOpen)
        }
        out.append(contentsOf: literal)
        out.append(contentsOf: close)
        out.append(contentsOf: openChunkTail)
        return out
    }

    @inline(__always) static func equal(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ literal: [UInt8]) -> Bool {
        r.count == literal.count && literal.withUnsafeBytes { l in
            UnsafeRawBufferPointer(rebasing: b[r]).elementsEqual(l)
        }
    }

    /// Every event, read strictly into values (`JSONReader.parse`) and written with `JSONWriter`:
    /// `translate` without its fast path, the reference the fast path is held to (public for the
    /// differential fuzz target).
    public mutating func translateValues(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        guard case .object(let e)? = try? JSONReader.parse(data), let type = e["type"]?.string else { return [] }
        switch type {
        case "message_start":
            let m = e["message"]?.objectValue
            if let i = m?["id"]?.string { id = "chatcmpl-" + i }
            model = m?["model"] ?? .null
            let u = m?["usage"]?.objectValue
            inputTokens = AnthropicResponse.int(u?["input_tokens"])
            outputTokens = AnthropicResponse.int(u?["output_tokens"])
            return chunk(delta: .obj([("role", .string("assistant")), ("content", .string(""))]), finish: .null)
        case "content_block_start":
            guard let b = e["content_block"]?.objectValue, b["type"]?.string == "tool_use",
                  let block = AnthropicResponse.index(e["index"]) else { return [] }
            let k = toolIndex.count
            toolIndex[block] = k
            return chunk(delta: .obj([("tool_calls", .array([.obj([
                ("index", .int(k)), ("id", b["id"] ?? .null), ("type", .string("function")),
                ("function", .obj([("name", b["name"] ?? .null), ("arguments", .string(""))])),
            ])]))]), finish: .null)
        case "content_block_delta":
            let d = e["delta"]?.objectValue
            switch d?["type"]?.string {
            case "text_delta"?:
                guard let t = d?["text"]?.string else { return [] }
                return chunk(delta: .obj([("content", .string(t))]), finish: .null)
            case "input_json_delta"?:
                guard let block = AnthropicResponse.index(e["index"]), let k = toolIndex[block],
                      let part = d?["partial_json"]?.string else { return [] }
                return chunk(delta: .obj([("tool_calls", .array([.obj([("index", .int(k)), ("function", .obj([("arguments", .string(part))]))])]))]),
                             finish: .null)
            default:
                return []
            }
        case "message_delta":
            if let s = e["delta"]?.objectValue?["stop_reason"]?.string { stopReason = s }
            if let o = e["usage"]?.objectValue?["output_tokens"] { outputTokens = AnthropicResponse.int(o) }
            return []
        case "message_stop":
            finished = true
            var out = chunk(delta: .obj([]), finish: AnthropicResponse.finishReason(stopReason))
            if includeUsage {
                out += event(.obj(base() + [("choices", .array([])),
                                            ("usage", AnthropicResponse.usage(input: inputTokens, output: outputTokens))]))
            }
            out += Array("data: [DONE]\n\n".utf8)
            return out
        case "error":
            finished = true
            let err = e["error"]?.objectValue
            let body: JSONValue = .obj([("error", .obj([
                ("message", .string(err?["message"]?.string ?? "The provider failed.")),
                ("type", .string(err?["type"]?.string == "overloaded_error" ? "server_error" : "api_error")),
                ("param", .null),
                ("code", .string(err?["type"]?.string ?? "provider_error")),
            ]))])
            return Array("event: error\ndata: ".utf8) + JSONWriter.bytes(body) + Array("\n\n".utf8)
        default:
            return []   // ping, content_block_stop: nothing for an OpenAI client
        }
    }

    func base() -> [(String, JSONValue)] {
        [("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)), ("model", model)]
    }

    /// `chunkHead` from the stream's id and model: the members `base()` lists, then the choice
    /// up to its delta (the bytes `chunk` writes before the delta).
    func renderChunkHead() -> [UInt8] {
        var out = Array("data: {".utf8)
        for (i, (name, value)) in base().enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.string(name, &out)
            out.append(UInt8(ascii: ":"))
            JSONWriter.write(value, &out)
        }
        out.append(contentsOf: ",\"choices\":[{\"index\":0,\"delta\":".utf8)
        return out
    }

    /// `{…base, "choices":[{"index":0,"delta":…,"logprobs":null,"finish_reason":…}]
    /// (, "usage":null)}` as an event.
    func chunk(delta: JSONValue, finish: JSONValue) -> [UInt8] {
        var out = chunkHead
        JSONWriter.write(delta, &out)
        if finish == .null { out.append(contentsOf: openChunkTail); return out }
        out.append(contentsOf: Self.finishReasonOpen)
        JSONWriter.write(finish, &out)
        out.append(contentsOf: "}]".utf8)
        out.append(contentsOf: chunkEnd)
        return out
    }

    func event(_ v: JSONValue) -> [UInt8] { Array("data: ".utf8) + JSONWriter.bytes(v) + Array("\n\n".utf8) }
}
