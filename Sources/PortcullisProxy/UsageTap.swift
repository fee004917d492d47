import PortcullisCore
#if canImport(Glibc)
import Glibc
#endif
import PortcullisHTTP
import PortcullisJSON
import CLinux

/// The response-path seam where a body is observed (and, for SSE, transformed event by event):
/// here it finds the provider's `usage` for token settlement.
///
/// - JSON bodies are copied (up to 256 KiB) and read once at the end.
/// - SSE streams go through an `SSEDecoder`; each complete event is inspected. When the gateway
///   added `stream_options.include_usage` itself (`hide`), the usage-only chunk is dropped and
///   events are forwarded whole (an event leaves as soon as its blank line arrives); otherwise
///   the bytes pass through untouched and events are only observed.
/// Owned by a connection's `ProxyCoordinator`, `reset` for each response; loop thread only.
final class UsageTap {
    /// What the reading of one response found. Replaced whole by `reset`: nothing of a previous
    /// response survives into the next one's reading. (Every per-response field lives here,
    /// except the event decoder and the capture buffer, which `reset` replaces and empties.)
    struct Reading {
        var hide: Bool
        var sse = false
        var jsonTooLarge = false
        var usage: Int64?
        var promptTokens: Int64?
        var completionTokens: Int64?
        var streamModel: String?
        /// Anthropic's own format (native `/v1/messages` clients): input tokens come with
        /// `message_start`, output tokens with `message_delta`; merged, not last-wins.
        var anthropicInput: Int64?
        var anthropicOutput: Int64?
        var contentEvents = 0
        init(hide: Bool) { self.hide = hide }
    }
    private var r: Reading
    var decoder = SSEDecoder(maxEventBytes: UsageTap.maxEventBytes)
    /// A JSON answer's bytes as they pass (a buffer of its own: appended with `memcpy`, no
    /// storage until the first JSON answer, a big one's storage freed at `reset`).
    let json = ByteBuffer(capacity: 1024, allocateNow: false)

    var hide: Bool { r.hide }
    var sse: Bool { r.sse }
    var usage: Int64? { r.usage }
    /// The provider's prompt / completion counts (OpenAI's `prompt_tokens` / `completion_tokens`,
    /// Anthropic's `input_tokens` / `output_tokens`), for the access log and metrics.
    var promptTokens: Int64? { r.promptTokens }
    var completionTokens: Int64? { r.completionTokens }
    /// The `model` the provider says it served (its response's top-level member; the first
    /// event's in a stream), when it is a plain string: labels token metrics of plain routes.
    /// Read from a JSON body only when asked (the body stays captured until the next request).
    var model: String? {
        if let m = r.streamModel { return m }
        guard !r.sse, !r.jsonTooLarge, !json.isEmpty else { return nil }
        return modelName(in: json.readable)
    }
    /// The last model name read on this connection, kept across responses: a provider names the
    /// same model in answer after answer, and bytes equal to it are not made a String again.
    private var lastModel = ""
    /// Its bytes (compared with one `memcmp`; a small String has no storage to compare against).
    private var lastModelBytes: [UInt8] = []
    /// Data events carrying choices (≈ one token each in OpenAI streams).
    var contentEvents: Int { r.contentEvents }
    static let maxJSONCapture = 262_144
    /// The largest event the decoder holds whole (`filter` says what happens past it).
    static let maxEventBytes = 1 << 20
    static let countNames: JSONNames = ["total_tokens", "prompt_tokens", "completion_tokens"]
    static let anthropicNames: JSONNames = ["input_tokens", "output_tokens"]

    init(hide: Bool) { r = Reading(hide: hide) }

    /// Ready for the connection's next response (one tap per connection, not per response: no
    /// allocation per request). The capture buffer is kept, emptied, when small; big ones go.
    func reset(hide: Bool) {
        r = Reading(hide: hide)
        decoder = SSEDecoder(maxEventBytes: UsageTap.maxEventBytes)
        json.clear()
        if json.capacity > UsageTap.reusedCapacity { json.release() }
    }

    static let reusedCapacity = 4096

    /// `sse`: the response is an event stream.
    func begin(sse: Bool) { r.sse = sse }

    /// Whether body bytes must go through `filter` (whole events) instead of straight through.
    var filters: Bool { r.sse && r.hide }

    /// A content chunk of the stream translator's fast path is about to pass (one whole event,
    /// its `choices` a delta, its `usage` null or absent: `AnthropicStreamTranslator
    /// .lastWasDeltaChunk`): counted as `inspect` would count it, without framing or searching it
    /// again. False — the caller feeds it to `observe` or `filter` as any bytes — unless the
    /// stream's model is already read (`inspect` reads it from the first event that names one)
    /// and the decoder is between events (the chunk cannot be the end of one it holds).
    func passContentChunk() -> Bool {
        guard r.sse, r.streamModel != nil, decoder.isAtEventBoundary else { return false }
        r.contentEvents += 1
        return true
    }

    /// Observes bytes that pass through unchanged.
    func observe(_ bytes: UnsafeRawBufferPointer) {
        if r.sse {
            _ = decoder.feed(bytes) { event in _ = inspect(event) }
        } else if !r.jsonTooLarge {
            if json.readableBytes + bytes.count > UsageTap.maxJSONCapture { r.jsonTooLarge = true; json.clear(); json.release() } else { json.append(bytes) }
        }
    }

    /// Feeds bytes of a filtered stream; `forward` gets each event to send (the hidden usage
    /// chunk is not among them). A decoder overflow forwards the raw bytes from then on.
    func filter(_ bytes: UnsafeRawBufferPointer, forward: (UnsafeRawBufferPointer) -> Void) {
        let outcome = decoder.feed(bytes) { event in
            if inspect(event) { forward(event) }
        }
        if outcome == .eventTooLarge {
            decoder.partial.withUnsafeBytes { forward($0) }
            decoder = SSEDecoder(maxEventBytes: Int.max)
        }
    }

    /// At the end of the body: what is left of a filtered stream goes out as it is.
    func finish(forward: (UnsafeRawBufferPointer) -> Void) {
        if r.sse {
            let filtering = filters
            decoder.finish { event in
                let keep = inspect(event)
                if filtering && keep { forward(event) }
            }
            if filters && !decoder.partial.isEmpty { decoder.partial.withUnsafeBytes { forward($0) } }
        } else {
            finishJSON()
        }
    }

    /// At the end of a JSON answer (not an event stream): its `usage`, read from the capture.
    func finishJSON() {
        guard !r.sse, !r.jsonTooLarge, !json.isEmpty else { return }
        let b = json.readable
        guard let u = UsageTap.valueStart(of: "\"usage\"", in: b), b[u] == UInt8(ascii: "{") else { return }
        let f = UsageTap.fields(b, objectAt: u)
        r.usage = f.total ?? f.input.flatMap { i in f.output.map { i + $0 } }
        r.promptTokens = f.prompt ?? f.input
        r.completionTokens = f.completion ?? f.output
    }

    /// Reads one event; false when it is the usage-only chunk to hide. Cheap for the common
    /// event: two byte searches (a provider's content strings escape their quotes, so a raw
    /// `"usage":` / `"choices":` can only be a member name); only the usage chunk is parsed.
    private func inspect(_ event: UnsafeRawBufferPointer) -> Bool {
        SSEDecoder.withData(of: event) { data -> Bool in
            guard let b = data, b.first == UInt8(ascii: "{") else { return true }
            if r.streamModel == nil { r.streamModel = modelName(in: b) }
            let emptyChoices = UsageTap.valueStart(of: "\"choices\"", in: b).map { UsageTap.isEmptyArray(b, at: $0) } ?? true
            if !emptyChoices { r.contentEvents += 1 }
            guard let u = UsageTap.valueStart(of: "\"usage\"", in: b), b[u] == UInt8(ascii: "{") else { return true }
            let f = UsageTap.fields(b, objectAt: u)
            if let total = f.total {
                r.usage = total
                r.promptTokens = f.prompt; r.completionTokens = f.completion
                return !(r.hide && emptyChoices)
            }
            if let i = f.input { r.anthropicInput = i }
            if let o = f.output { r.anthropicOutput = o }
            if r.anthropicInput != nil || r.anthropicOutput != nil {
                r.usage = (r.anthropicInput ?? 0) + (r.anthropicOutput ?? 0)
                r.promptTokens = r.anthropicInput; r.completionTokens = r.anthropicOutput
            }
            return true
        }
    }

    struct Counts: Equatable { var total, prompt, completion, input, output: Int64? }

    static func fields(_ b: UnsafeRawBufferPointer, objectAt at: Int) -> Counts {
        leadingCounts(b, objectAt: at) ?? scannedCounts(b, objectAt: at)
    }

    /// The counts of the usage object at `at`, found by a lenient scan (any member order).
    static func scannedCounts(_ b: UnsafeRawBufferPointer, objectAt at: Int) -> Counts {
        let sub = UnsafeRawBufferPointer(rebasing: b[at...])
        // The object ends before the end of `b`: a lenient scan stops at its closing brace.
        // OpenAI writes the three counts first: the scan stops once it has them.
        guard let f = JSONReader.lenientTopLevelMembers(countNames, in: sub, untilFound: true) else { return Counts() }
        let prompt = integer(sub, f.member(1)), completion = integer(sub, f.member(2))
        if let t = integer(sub, f.member(0)) { return Counts(total: t, prompt: prompt, completion: completion) }
        if let p = prompt, let c = completion { return Counts(total: p + c, prompt: p, completion: c) }
        guard let a = JSONReader.lenientTopLevelMembers(anthropicNames, in: sub, untilFound: true) else { return Counts() }
        return Counts(input: integer(sub, a.member(0)), output: integer(sub, a.member(1)))
    }

    /// The counts of a usage object whose members are integers up to the counts wanted (OpenAI
    /// writes `prompt_tokens`, `completion_tokens`, `total_tokens` first; Anthropic's objects
    /// are usually integers only), read member by member without a general scan. Nil — the
    /// caller scans — at anything else: a nested or string value before the counts, an escape
    /// in a name, a repeated count, a number that is not a plain integer.
    static func leadingCounts(_ b: UnsafeRawBufferPointer, objectAt at: Int) -> Counts? {
        if let c = openAILayoutCounts(b, objectAt: at) { return c }
        let n = b.count
        guard at < n, b[at] == UInt8(ascii: "{"), let base = b.baseAddress else { return nil }
        var i = at + 1
        var total, prompt, completion, input, output: Int64?
        var first = true
        enum Count { case prompt, completion, total, input, output, other }
        @inline(__always) func skipSpace() {
            while i < n && (b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09) { i += 1 }
        }
        @inline(__always) func named(_ k: Range<Int>, _ name: StaticString) -> Bool {
            k.count == name.utf8CodeUnitCount && memcmp(base + k.lowerBound, name.utf8Start, k.count) == 0
        }
        func result() -> Counts {
            if let t = total { return Counts(total: t, prompt: prompt, completion: completion) }
            if let p = prompt, let c = completion { return Counts(total: p + c, prompt: p, completion: c) }
            return Counts(input: input, output: output)
        }
        while true {
            skipSpace()
            if first && i < n && b[i] == UInt8(ascii: "}") { return result() }          // {}
            first = false
            guard i < n, b[i] == 0x22 else { return nil }
            let keyStart = i + 1
            // Which count the member is, found once: the usual keys in place (name and closing
            // quote, one compare), any other scanned to its quote and then named.
            var which = Count.other
            @inline(__always) func recognise(_ quoted: StaticString, _ c: Count) {
                let m = quoted.utf8CodeUnitCount
                guard n - keyStart >= m, memcmp(base + keyStart, quoted.utf8Start, m) == 0 else { return }
                which = c
                i = keyStart + m - 1                                    // at the closing quote
            }
            switch keyStart < n ? b[keyStart] : 0 {
            case UInt8(ascii: "p"): recognise("prompt_tokens\"", .prompt)
            case UInt8(ascii: "c"): recognise("completion_tokens\"", .completion)
            case UInt8(ascii: "t"): recognise("total_tokens\"", .total)
            default: break
            }
            if which == .other {
                i = keyStart
                while i < n && b[i] != 0x22 && b[i] != 0x5C { i += 1 }
                guard i < n, b[i] == 0x22 else { return nil }
                let key = keyStart..<i
                if named(key, "prompt_tokens") { which = .prompt }
                else if named(key, "completion_tokens") { which = .completion }
                else if named(key, "total_tokens") { which = .total }
                else if named(key, "input_tokens") { which = .input }
                else if named(key, "output_tokens") { which = .output }
            }
            i += 1
            skipSpace()
            guard i < n, b[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            skipSpace()
            guard let v = leadingDigits(b, &i), i < n, b[i] != UInt8(ascii: "."), b[i] | 0x20 != UInt8(ascii: "e"),
                  !(b[i] >= 0x30 && b[i] <= 0x39) else { return nil }
            func set(_ slot: inout Int64?) -> Bool { if slot != nil { return false }; slot = v; return true }
            let ok: Bool
            switch which {
            case .prompt: ok = set(&prompt)
            case .completion: ok = set(&completion)
            case .total: ok = set(&total)
            case .input: ok = set(&input)
            case .output: ok = set(&output)
            case .other: ok = true
            }
            guard ok else { return nil }
            if total != nil && prompt != nil && completion != nil { return result() }
            skipSpace()
            guard i < n else { return nil }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { return result() }
            return nil
        }
    }

    /// The three counts when the object starts exactly as OpenAI writes it —
    /// `{"prompt_tokens":N,"completion_tokens":N,"total_tokens":N` then `,` or `}`, no white
    /// space, integers of at most 15 digits — read with three compares; nil for anything else,
    /// which `leadingCounts` then reads member by member (to the same answer for this layout).
    static func openAILayoutCounts(_ b: UnsafeRawBufferPointer, objectAt at: Int) -> Counts? {
        guard let base = b.baseAddress else { return nil }
        let n = b.count
        var i = at
        @inline(__always) func expect(_ s: StaticString) -> Bool {
            let m = s.utf8CodeUnitCount
            guard n - i >= m, memcmp(base + i, s.utf8Start, m) == 0 else { return false }
            i += m
            return true
        }
        guard expect("{\"prompt_tokens\":"), let p = leadingDigits(b, &i), expect(",\"completion_tokens\":"),
              let c = leadingDigits(b, &i), expect(",\"total_tokens\":"), let t = leadingDigits(b, &i),
              i < n, b[i] == UInt8(ascii: ",") || b[i] == UInt8(ascii: "}") else { return nil }
        return Counts(total: t, prompt: p, completion: c)
    }

    /// The value of the decimal digits at `i`, at most 15 of them (`i` moves past them); nil,
    /// `i` unmoved, when there is none. (The caller judges the byte after them.)
    @inline(__always)
    static func leadingDigits(_ b: UnsafeRawBufferPointer, _ i: inout Int) -> Int64? {
        let start = i
        var v: Int64 = 0
        while i < b.count && i - start < 15 {
            let d = b[i] &- 0x30
            if d > 9 { break }
            v = v &* 10 &+ Int64(d)
            i += 1
        }
        return i > start ? v : nil
    }

    /// A non-negative integer of at most 15 digits at `range`.
    static func integer(_ b: UnsafeRawBufferPointer, _ range: Range<Int>?) -> Int64? {
        range.flatMap { DecimalDigits.value(b[$0], maxDigits: 15) }
    }

    /// The index of the first byte of the value of the first member named `quotedName`
    /// (`"usage"`), found by a byte search; nil when absent. The search runs `memchr` for the
    /// name's first letter (vector-wide in glibc) and compares the whole name where a quote
    /// precedes it: fewer instructions than `memmem`'s on an OpenAI answer, whose `usage` sits
    /// near the end.
    static func valueStart(of quotedName: StaticString, in b: UnsafeRawBufferPointer) -> Int? {
        let n = quotedName.utf8CodeUnitCount
        guard n >= 2, let base = b.baseAddress else { return nil }
        let name = quotedName.utf8Start
        let letter = Int32(name[1])
        var i = 1                                   // where the name's letter can first be
        while i + n - 1 <= b.count {
            guard let hit = memchr(base + i, letter, b.count - i - (n - 2)) else { return nil }
            let start = UnsafeRawPointer(hit) - base - 1
            i = start + 2
            guard b[start] == name[0], memcmp(base + start, name, n) == 0 else { continue }
            var j = start + n
            while j < b.count && (b[j] == 0x20 || b[j] == 0x09 || b[j] == 0x0A || b[j] == 0x0D) { j += 1 }
            if j < b.count && b[j] == UInt8(ascii: ":") {
                j += 1
                while j < b.count && (b[j] == 0x20 || b[j] == 0x09 || b[j] == 0x0A || b[j] == 0x0D) { j += 1 }
                return j < b.count ? j : nil
            }
        }
        return nil
    }

    /// The first `"model": "<name>"` member's value when it is a short string without escapes
    /// (OpenAI and Anthropic put it near the start of a response): the connection's last name
    /// read when the bytes are its bytes, else a new String.
    func modelName(in b: UnsafeRawBufferPointer) -> String? {
        guard let v = UsageTap.valueStart(of: "\"model\"", in: b), b[v] == 0x22, let base = b.baseAddress else { return nil }
        // The last name's bytes then a quote: that name (it has no quote, backslash or control
        // character, or it would not have been read), without reading the name byte by byte.
        let n = lastModelBytes.count
        if v + 1 + n < b.count, b[v + 1 + n] == 0x22,
           lastModelBytes.withUnsafeBytes({ m in n == 0 || m.baseAddress.map { memcmp($0, base + v + 1, n) == 0 } ?? false }) {
            return lastModel
        }
        guard let r = UsageTap.nameRange(in: b, quoteAt: v) else { return nil }
        let name = UnsafeRawBufferPointer(start: base + r.lowerBound, count: r.count)
        lastModel = String(decoding: name, as: UTF8.self)
        lastModelBytes = Array(name)
        return lastModel
    }

    /// Where the string value whose opening quote is at `v` is (without its quotes), when it is
    /// at most 256 bytes without escapes or control characters.
    static func nameRange(in b: UnsafeRawBufferPointer, quoteAt v: Int) -> Range<Int>? {
        let limit = min(b.count, v + 1 + 256)
        var i = v + 1
        while i < limit && b[i] != 0x22 && b[i] != 0x5C && b[i] >= 0x20 { i += 1 }
        guard i < limit, b[i] == 0x22 else { return nil }
        return (v + 1)..<i
    }

    static func isEmptyArray(_ b: UnsafeRawBufferPointer, at i: Int) -> Bool {
        guard b[i] == UInt8(ascii: "[") else { return false }
        var j = i + 1
        while j < b.count && (b[j] == 0x20 || b[j] == 0x09 || b[j] == 0x0A || b[j] == 0x0D) { j += 1 }
        return j < b.count && b[j] == UInt8(ascii: "]")
    }
}
