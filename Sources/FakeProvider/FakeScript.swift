import PortcullisHTTP

/// What one request asked the fake provider to do, from `x-fake-*` headers (per request) with
/// the command-line defaults underneath. Every knob a test or benchmark needs:
///
/// | header | meaning |
/// |---|---|
/// | `x-fake-status: 429` | answer with that status and an OpenAI error body |
/// | `x-fake-first-byte-delay-ms: N` | wait N ms before the response head |
/// | `x-fake-inter-event-delay-ms: N` | wait N ms between SSE events |
/// | `x-fake-tokens: N` | N content tokens (default 5) |
/// | `x-fake-reset-after: N` | after N SSE events (or 0: before any byte), reset the connection (RST) |
/// | `x-fake-hang-after: N` | after N SSE events stop sending but keep the connection open (`head`: never answer) |
/// | `x-fake-chunked: 1` | send a non-streamed JSON answer with chunked framing |
/// | `x-fake-close: 1` | send `connection: close` and close after the response |
/// | `x-fake-stamp: 1` | start each SSE event with a comment line `: sent_ns=N`, N the CLOCK_MONOTONIC time it was queued (benchmarks measure per-event delay with it) |
/// | `x-fake-retry-after: N` | the `Retry-After` seconds of a 429 (default 1) |
/// | `x-fake-request-id: ID` | answer with `x-request-id: ID`, as OpenAI's answers carry their own id |
/// | `x-fake-tool: NAME` | (Messages API) answer with a call of tool NAME, input `{"gate":"north"}` |
/// | `x-fake-response-headers: openai` | answer with the header lines OpenAI's API adds (`--response-headers openai` for every answer) |
///
/// The same knobs can be put in the path, so that several "providers" (base URLs) on one fake
/// behave differently: `/_x/status=500,first-byte-delay-ms=50/v1/chat/completions` (names
/// without the `x-fake-` prefix). Path knobs apply first; headers override them.
struct FakeScript {
    var retryAfter = 1
    /// Answer with a call of this tool (Messages API answers) instead of text.
    var tool: String? = nil
    var status = 200
    var firstByteDelayMs = 0
    var interEventDelayMs = 0
    var tokens = 5
    var resetAfter: Int? = nil
    var hangAfter: Int? = nil
    var hangHead = false
    var chunked = false
    var close = false
    var stamp = false
    /// The `x-request-id` the answer carries (none by default).
    var requestID: String? = nil
    /// Header lines every answer carries besides its own (`--response-headers openai`: those
    /// OpenAI's API sends through its CDN, `OpenAIWire.responseHeaderLines`); none by default.
    var extraHeaderLines = ""
    var stream = false
    var includeUsage = false
    var model = "gpt-4o-mini-2024-07-18"

    init(defaults: FakeScript? = nil) {
        if let d = defaults { self = d }
    }

    /// The `/_x/<knobs>` prefix of a path, if any.
    static func pathKnobs(_ path: String) -> Substring? {
        guard path.hasPrefix("/_x/") else { return nil }
        let rest = path.dropFirst(4)
        return rest.firstIndex(of: "/").map { rest[..<$0] } ?? rest
    }

    mutating func apply(_ head: HTTPRequestHead, body: [UInt8]) {
        var knobs: [(String, String)] = []
        if let k = FakeScript.pathKnobs(head.path) {
            for pair in k.split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { knobs.append(("x-fake-" + kv[0], String(kv[1]))) }
            }
        }
        for f in head.fields where f.known == .other && head.nameHasPrefix(f, "x-fake-") {
            knobs.append((head.name(f), head.value(f)))
        }
        for (name, value) in knobs {
            let h = (name: name, value: value)
            let n = Int(h.value)
            switch h.name {
            case "x-fake-retry-after": retryAfter = n ?? retryAfter
            case "x-fake-tool": tool = h.value.isEmpty ? nil : h.value
            case "x-fake-status": status = n ?? status
            case "x-fake-first-byte-delay-ms": firstByteDelayMs = n ?? firstByteDelayMs
            case "x-fake-inter-event-delay-ms": interEventDelayMs = n ?? interEventDelayMs
            case "x-fake-tokens": tokens = max(0, n ?? tokens)
            case "x-fake-reset-after": resetAfter = n
            case "x-fake-hang-after":
                if h.value == "head" { hangHead = true } else { hangAfter = n }
            case "x-fake-chunked": chunked = h.value == "1" || h.value == "true"
            case "x-fake-close": close = h.value == "1" || h.value == "true"
            case "x-fake-stamp": stamp = h.value == "1" || h.value == "true"
            case "x-fake-request-id": requestID = h.value.isEmpty ? nil : h.value
            case "x-fake-response-headers": extraHeaderLines = h.value == "openai" ? OpenAIWire.responseHeaderLines : ""
            default: break
            }
        }
        stream = JSONScan.bool(body, key: "stream") ?? false
        includeUsage = JSONScan.bool(body, key: "include_usage") ?? false
        if let m = JSONScan.string(body, key: "model") { model = m }
    }
}

/// Just enough JSON scanning to read `stream`, `include_usage` and `model` from a request body
/// without a JSON library (the fake provider has to be fast enough to be a benchmark baseline).
enum JSONScan {
    static func find(_ b: [UInt8], key: String) -> Int? {
        let pat = Array("\"\(key)\"".utf8)
        guard b.count >= pat.count else { return nil }
        var i = 0
        outer: while i <= b.count - pat.count {
            for j in 0..<pat.count where b[i + j] != pat[j] { i += 1; continue outer }
            var k = i + pat.count
            while k < b.count && (b[k] == 32 || b[k] == 9 || b[k] == 10 || b[k] == 13) { k += 1 }
            guard k < b.count, b[k] == 58 else { i += 1; continue }
            k += 1
            while k < b.count && (b[k] == 32 || b[k] == 9 || b[k] == 10 || b[k] == 13) { k += 1 }
            return k
        }
        return nil
    }

    static func bool(_ b: [UInt8], key: String) -> Bool? {
        guard let k = find(b, key: key) else { return nil }
        if b.count - k >= 4 && b[k] == 116 && b[k+1] == 114 && b[k+2] == 117 && b[k+3] == 101 { return true }
        if b.count - k >= 5 && b[k] == 102 { return false }
        return nil
    }

    static func string(_ b: [UInt8], key: String) -> String? {
        guard let k = find(b, key: key), k < b.count, b[k] == 34 else { return nil }
        var e = k + 1
        while e < b.count && b[e] != 34 && b[e] != 92 && e - k < 200 { e += 1 }
        guard e < b.count, b[e] == 34 else { return nil }
        return String(decoding: b[(k + 1)..<e], as: UTF8.self)
    }
}
