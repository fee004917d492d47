import PortcullisCore

/// Incremental Server-Sent Events framer (WHATWG HTML §9.2.6 line rules: a line ends at CRLF,
/// LF or CR; an empty line ends an event). A value type fed arbitrary slices, like
/// `ChunkedDecoder`: it hands out each complete event's raw bytes (terminating blank line
/// included) and keeps only the bytes of the event in progress.
public struct SSEDecoder: Sendable {
    /// Bytes of the event in progress.
    public private(set) var partial: [UInt8] = []
    var atLineStart = true
    /// The previous byte was a CR ending a line (a following LF belongs to it).
    var afterCR = false
    /// That CR ended an empty line: the event ends once we know whether an LF follows.
    var eventEndsAfterCR = false
    /// Bound on one event (a provider that never sends a blank line cannot grow memory).
    public let maxEventBytes: Int

    public init(maxEventBytes: Int = 1 << 20) { self.maxEventBytes = maxEventBytes }

    /// Between events: nothing of an event held, no line or CR pending. Bytes that are whole
    /// events could be read apart from this decoder without changing what it hands out next.
    public var isAtEventBoundary: Bool { partial.isEmpty && atLineStart && !afterCR && !eventEndsAfterCR }

    public enum Outcome: Equatable { case ok, eventTooLarge }

    /// Feeds `bytes`; `onEvent` gets each event completed by them (valid during the call only).
    /// Runs of bytes other than CR and LF are taken eight at a time (`ByteWord`); an event that
    /// begins and ends within `bytes` is handed out from them, uncopied; only the bytes of an
    /// event still in progress at the end are kept (`partial`). The same events, and the same
    /// `eventTooLarge` point, as a byte-by-byte reading of the line rules.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, onEvent: (UnsafeRawBufferPointer) -> Void) -> Outcome {
        guard let base = bytes.baseAddress else { return .ok }
        let n = bytes.count
        var start = 0     // the event in progress is `partial` + bytes[start..<i]
        var i = 0
        @inline(__always) func emit(at end: Int) {
            let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            if partial.isEmpty {
                onEvent(slice)
            } else {
                partial.append(bytes: slice)
                partial.withUnsafeBytes { onEvent($0) }
                partial.removeAll(keepingCapacity: true)
            }
            start = end
            atLineStart = true
            afterCR = false
        }
        while i < n {
            let c = base.load(fromByteOffset: i, as: UInt8.self)
            if eventEndsAfterCR {
                eventEndsAfterCR = false
                if c == 10 { i += 1; emit(at: i); continue }
                emit(at: i)
            }
            if c != 13 && c != 10 {
                i = ByteWord.firstIndex(of: 13, or: 10, in: base, from: i + 1, to: n)
                atLineStart = false
                afterCR = false
                if partial.count + (i - start) > maxEventBytes { return .eventTooLarge }
                continue
            }
            i += 1
            if c == 13 {
                if atLineStart { eventEndsAfterCR = true } else { atLineStart = true }
                afterCR = true
            } else {
                if afterCR { afterCR = false; continue }   // the LF of a CRLF: the line already ended
                if atLineStart { emit(at: i) } else { atLineStart = true }
            }
            if partial.count + (i - start) > maxEventBytes { return .eventTooLarge }
        }
        if start < n { partial.append(bytes: UnsafeRawBufferPointer(rebasing: bytes[start..<n])) }
        return .ok
    }

    /// At the end of the stream: an event whose blank line was a lone CR is complete.
    public mutating func finish(onEvent: (UnsafeRawBufferPointer) -> Void) {
        if eventEndsAfterCR { eventEndsAfterCR = false; emit(onEvent) }
    }

    private mutating func emit(_ onEvent: (UnsafeRawBufferPointer) -> Void) {
        partial.withUnsafeBytes { onEvent($0) }
        partial.removeAll(keepingCapacity: true)
        atLineStart = true
        afterCR = false
    }

    /// `body` called with the `data` of a raw event (as `data(of:)` gives it; nil when it has
    /// none). An event with one `data:` line — the usual one — is passed its value in place,
    /// uncopied; only an event of several is joined into an array first.
    public static func withData<R>(of event: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        var value: Range<Int>? = nil
        var several = false
        forEachDataValue(of: event) { v in
            if value != nil { several = true; return false }
            value = v
            return true
        }
        if several, let joined = data(of: event) { return joined.withUnsafeBytes { body($0) } }
        guard let v = value else { return body(nil) }
        return body(UnsafeRawBufferPointer(rebasing: event[v]))
    }

    /// The `data` of a raw event: its `data:` lines' values (one leading space removed) joined
    /// by LF; nil when it has none.
    public static func data(of event: UnsafeRawBufferPointer) -> [UInt8]? {
        var out: [UInt8]? = nil
        forEachDataValue(of: event) { v in
            if out == nil { out = [] } else { out!.append(10) }
            out!.append(bytes: UnsafeRawBufferPointer(rebasing: event[v]))
            return true
        }
        return out
    }

    /// Calls `body` with the value of each `data:` line of a raw event (one leading space
    /// removed), in order, until it returns false. Lines end at LF, CR or CRLF, found eight
    /// bytes a word.
    @inline(__always)
    static func forEachDataValue(of event: UnsafeRawBufferPointer, _ body: (Range<Int>) -> Bool) {
        guard let base = event.baseAddress else { return }
        var i = 0
        let n = event.count
        while i < n {
            var e = ByteWord.firstIndex(of: 10, or: 13, in: base, from: i, to: n)
            // line [i, e): a data line when it starts `data:`
            if e - i >= 5 && event[i] == 100 && event[i + 1] == 97 && event[i + 2] == 116 && event[i + 3] == 97 && event[i + 4] == 58 {
                let v = i + 5 < e && event[i + 5] == 32 ? i + 6 : i + 5
                if !body(v..<e) { return }
            }
            if e < n && event[e] == 13 && e + 1 < n && event[e + 1] == 10 { e += 1 }
            i = e + 1
        }
    }
}
