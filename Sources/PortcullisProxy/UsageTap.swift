import PortcullisCore
import PortcullisHTTP
import PortcullisJSON

/// The response-path seam where a body is observed (and, for SSE, transformed event by event):
/// here it finds the provider's `usage` for token settlement.
///
/// - JSON bodies are copied (up to 256 KiB) and read once at the end.
/// - SSE streams go through an `SSEDecoder`; each complete event is inspected. When the gateway
///   added `stream_options.include_usage` itself (`hide`), the usage-only chunk is dropped and
///   events are forwarded whole (an event leaves as soon as its blank line arrives); otherwise
///   the bytes pass through untouched and events are only observed.
/// Owned by the `ProxyCoordinator` for one response; loop thread only.
final class UsageTap {
    let hide: Bool
    var sse = false
    var decoder = SSEDecoder(maxEventBytes: 1 << 20)
    var json: [UInt8] = []
    var jsonTooLarge = false
    private(set) var usage: Int64?
    /// Data events carrying choices (≈ one token each in OpenAI streams).
    private(set) var contentEvents = 0
    static let maxJSONCapture = 262_144

    init(hide: Bool) { self.hide = hide }

    /// `sse`: the response is an event stream.
    func begin(sse: Bool) { self.sse = sse }

    /// Whether body bytes must go through `filter` (whole events) instead of straight through.
    var filters: Bool { sse && hide }

    /// Observes bytes that pass through unchanged.
    func observe(_ bytes: UnsafeRawBufferPointer) {
        if sse {
            _ = decoder.feed(bytes) { event in _ = inspect(event) }
        } else if !jsonTooLarge {
            if json.count + bytes.count > UsageTap.maxJSONCapture { jsonTooLarge = true; json = [] } else { json.append(contentsOf: bytes) }
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
        if sse {
            let filtering = filters
            decoder.finish { event in
                let keep = inspect(event)
                if filtering && keep { forward(event) }
            }
            if filters && !decoder.partial.isEmpty { decoder.partial.withUnsafeBytes { forward($0) } }
        } else if !jsonTooLarge, !json.isEmpty {
            usage = json.withUnsafeBytes { UsageTap.usage(inObject: $0).total }
        }
    }

    /// Reads one event; false when it is the usage-only chunk to hide.
    private func inspect(_ event: UnsafeRawBufferPointer) -> Bool {
        guard let data = SSEDecoder.data(of: event), data.first == UInt8(ascii: "{") else { return true }
        let found = data.withUnsafeBytes { UsageTap.usage(inObject: $0) }
        if found.hasChoices { contentEvents += 1 }
        if let u = found.total {
            usage = u
            if hide && !found.hasChoices { return false }
        }
        return true
    }

    /// `usage.total_tokens` (or prompt + completion) of a chat-completion JSON object, and
    /// whether it has a non-empty `choices`.
    static func usage(inObject b: UnsafeRawBufferPointer) -> (total: Int64?, hasChoices: Bool) {
        guard let scan = try? JSONReader.topLevelMembers(["usage", "choices"], in: b) else { return (nil, false) }
        var hasChoices = false
        if let c = scan.member(1), c.count > 2, b[c.lowerBound] == UInt8(ascii: "[") {
            var i = c.lowerBound + 1
            while i < c.upperBound && (b[i] == 32 || b[i] == 10 || b[i] == 13 || b[i] == 9) { i += 1 }
            hasChoices = i < c.upperBound && b[i] != UInt8(ascii: "]")
        }
        guard let u = scan.member(0), b[u.lowerBound] == UInt8(ascii: "{") else { return (nil, hasChoices) }
        let sub = UnsafeRawBufferPointer(rebasing: b[u])
        guard let fields = try? JSONReader.topLevelMembers(["total_tokens", "prompt_tokens", "completion_tokens"], in: sub) else {
            return (nil, hasChoices)
        }
        func int(_ i: Int) -> Int64? {
            guard let r = fields.member(i), r.count <= 15 else { return nil }
            var n: Int64 = 0
            for k in r { let c = sub[k]; guard c >= 48 && c <= 57 else { return nil }; n = n * 10 + Int64(c - 48) }
            return n
        }
        if let t = int(0) { return (t, hasChoices) }
        if let p = int(1), let c = int(2) { return (p + c, hasChoices) }
        return (nil, hasChoices)
    }
}
