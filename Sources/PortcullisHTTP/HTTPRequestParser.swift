import PortcullisCore
#if canImport(Glibc)
import Glibc
#endif

/// Limits the request parser enforces.
public struct HTTPParserLimits: Sendable {
    public var maxHeaderBytes: Int
    public var maxRequestLineBytes: Int
    public var maxHeaderCount: Int
    public init(maxHeaderBytes: Int = 16384, maxRequestLineBytes: Int = 8192, maxHeaderCount: Int = 128) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxRequestLineBytes = min(maxRequestLineBytes, maxHeaderBytes)
        self.maxHeaderCount = maxHeaderCount
    }
}

public enum HeadParseResult<Head> {
    /// Not enough bytes yet; keep reading.
    case incomplete
    /// A whole head; `consumed` bytes (including the blank line) belong to it.
    case complete(Head, consumed: Int)
    case failure(GatewayError)
}

/// Where an incomplete head's parse stopped, so the next read resumes there instead of
/// re-scanning from the first byte (a head sent a byte at a time costs linear, not quadratic,
/// work). Offsets are relative to the start of the buffered bytes, which must not move or be
/// consumed while a head is incomplete. Owned by one connection; reset for every new head.
public struct HeadScanState {
    /// Start of the line being looked for.
    var lineStart = 0
    /// No LF in `[lineStart, scanFrom)`.
    var scanFrom = 0
    var requestLine: (Int, Int, Int)? = nil
    /// The header fields so far, as offsets from the first header line (`requestLine`'s end).
    var fields: [HeaderField] = []
    /// Bytes looked at in total (tests check that it stays linear in the head's size).
    public internal(set) var bytesExamined = 0
    /// The previous head's target on this connection. A client asking for the same target
    /// again (the usual keep-alive client) gets the same String back: no allocation, no UTF-8
    /// validation, and later stages' byte compares against it are identity checks. Kept by
    /// `nextHead()`.
    var recentTarget: String?
    /// The previous head made on this connection, refilled for the next one when nothing else
    /// holds it (see `HTTPRequestHead`): no object, field array or raw-bytes allocation for a
    /// keep-alive client's request. Kept by `nextHead()`; not kept when its header bytes need
    /// more than `maxSpareBytes` (an idle connection then holds no large head).
    var spare: HTTPRequestHead?
    static let maxSpareBytes = 4096
    public init() {}

    /// Ready for the connection's next head: everything reset but `recentTarget` and `spare`.
    public mutating func nextHead() {
        let t = recentTarget, h = spare
        self = HeadScanState()
        recentTarget = t; spare = h
    }

    /// `spare` when this state holds the only reference to it, else nil.
    mutating func reusableHead() -> HTTPRequestHead? {
        guard var h = spare.take() else { return nil }
        let unique = isKnownUniquelyReferenced(&h)
        spare = h
        return unique ? h : nil
    }

    /// Storage for this head's fields: the reusable head's array (emptied, capacity kept),
    /// which that head gets back at `finish`.
    mutating func prepareFields() {
        if let h = reusableHead() {
            swap(&fields, &h.fields)
            fields.removeAll(keepingCapacity: true)
        }
        fields.reserveCapacity(12)
    }

    /// The target at `[s, e)`: `recentTarget` when the bytes are the same, else a well-known
    /// target's literal (`String.wellKnownTarget`) or a new String (either becomes `recentTarget`).
    mutating func target(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int) -> String {
        let bytes = UnsafeRawBufferPointer(rebasing: b[s..<e])
        if let r = recentTarget, r.sameUTF8(bytes) { return r }
        let t = String.wellKnownTarget(bytes) ?? HeadLexer.string(b, s, e)
        recentTarget = t
        return t
    }
}

/// A strict RFC 9112 request-head parser. It never owns a socket (Envoy codec shape): give it
/// the buffered bytes (and, between reads of one head, its `HeadScanState`), it answers
/// incomplete / complete(head, consumed) / failure; tests feed it bytes whole, split, or one by one.
public struct HTTPRequestParser: Sendable {
    public var limits: HTTPParserLimits
    public init(limits: HTTPParserLimits = .init()) { self.limits = limits }

    /// Parses from scratch (tests, fuzzing).
    public func parse(_ b: UnsafeRawBufferPointer) -> HeadParseResult<HTTPRequestHead> {
        var state = HeadScanState()
        return parse(b, resuming: &state)
    }

    /// Parses `b`, resuming where `state` stopped on the previous call for this head. After a
    /// `complete` or `failure` answer, start the next head with a fresh state.
    public func parse(_ b: UnsafeRawBufferPointer, resuming st: inout HeadScanState) -> HeadParseResult<HTTPRequestHead> {
        if st.requestLine == nil {
            // RFC 9112 §2.2: ignore at least one empty line before the request line.
            while st.lineStart < 8, st.lineStart + 1 < b.count, b[st.lineStart] == HeadLexer.CR, b[st.lineStart + 1] == HeadLexer.LF {
                st.lineStart += 2
            }
            switch nextLine(b, &st) {
            case .incomplete:
                // Refused once it cannot end within the limit; a last byte that is CR may be
                // the line's end (its LF not read yet), so it does not count: a line of exactly
                // the limit is accepted however its bytes are split across reads.
                let pending = b.count - st.lineStart
                if pending > limits.maxRequestLineBytes && !(pending == limits.maxRequestLineBytes + 1 && b[b.count - 1] == HeadLexer.CR) {
                    return .failure(.uriTooLong)
                }
                return .incomplete
            case .bareLF:
                return .failure(.badRequest("Malformed request line: bare LF."))
            case .line(let s, let e, let next):
                if e - s > limits.maxRequestLineBytes { return .failure(.uriTooLong) }
                st.requestLine = (s, e, next)
                st.prepareFields()
            }
        }
        guard let requestLine = st.requestLine else { return .incomplete }
        while true {
            switch nextLine(b, &st) {
            case .incomplete:
                if b.count > limits.maxHeaderBytes { return .failure(.headersTooLarge) }
                return .incomplete
            case .bareLF:
                return .failure(.badRequest("Malformed header section: bare LF."))
            case .line(let s, let e, let next):
                if next > limits.maxHeaderBytes { return .failure(.headersTooLarge) }
                if s == e {
                    return finish(b, requestLine: requestLine, state: &st, headersEnd: s, consumed: next)
                }
                st.bytesExamined &+= e - s
                switch HeadLexer.field(b, s, e, base: requestLine.2) {
                case .success(let f):
                    st.fields.append(f)
                    if st.fields.count > limits.maxHeaderCount { return .failure(.headersTooLarge) }
                case .failure(let err):
                    return .failure(.badRequest("Malformed header: \(HeadLexer.describe(err.kind))."))
                }
            }
        }
    }

    /// The next CRLF line from `st.lineStart`, scanning only bytes not scanned before; on a
    /// line, advances `lineStart` past it.
    @inline(__always)
    private func nextLine(_ b: UnsafeRawBufferPointer, _ st: inout HeadScanState) -> HeadLexer.LineResult {
        let from = max(st.scanFrom, st.lineStart)
        guard from < b.count, let base = b.baseAddress else { st.scanFrom = max(from, b.count); return .incomplete }
        let found = memchr(base + from, Int32(HeadLexer.LF), b.count - from)
        guard let hit = found else {
            st.bytesExamined &+= b.count - from
            st.scanFrom = b.count
            return .incomplete
        }
        let i = UnsafeRawPointer(hit) - base
        st.bytesExamined &+= i + 1 - from
        let start = st.lineStart
        if i == start || b[i - 1] != HeadLexer.CR { return .bareLF }
        st.lineStart = i + 1
        st.scanFrom = i + 1
        return .line(start: start, end: i - 1, next: i + 1)
    }

    private func finish(_ b: UnsafeRawBufferPointer, requestLine: (Int, Int, Int),
                        state st: inout HeadScanState, headersEnd: Int, consumed: Int) -> HeadParseResult<HTTPRequestHead> {
        let fields = st.fields
        let (s, e, headersStart) = requestLine
        // method SP target SP version
        var i = s
        while i < e && HeadLexer.isTchar(b[i]) { i += 1 }
        guard i > s, i < e, b[i] == HeadLexer.SP else {
            return .failure(.badRequest("Malformed request line."))
        }
        let method = HeadLexer.method(b, s, i)
        let ts = i + 1
        guard let base = b.baseAddress, ts < e else { return .failure(.badRequest("Malformed request line.")) }
        let te = memchr(base + ts, Int32(HeadLexer.SP), e - ts).map { UnsafeRawPointer($0) - base } ?? e
        // RFC 9112 §3.2: the target is ASCII; controls, spaces and bytes ≥ 0x7F are refused.
        // Eight bytes at a time while none is ≤ 0x20 or ≥ 0x7F; a word with one goes to the byte loop.
        var j = ts
        while j + 8 <= te {
            let w = (base + j).loadUnaligned(as: UInt64.self)
            let high = w & 0x8080_8080_8080_8080
            let low = (w &- 0x2121_2121_2121_2121) & ~w & 0x8080_8080_8080_8080
            let d = w ^ 0x7F7F_7F7F_7F7F_7F7F
            let del = (d &- 0x0101_0101_0101_0101) & ~d & 0x8080_8080_8080_8080
            if high | low | del != 0 { break }
            j += 8
        }
        while j < te {
            let c = b[j]
            if c <= 0x20 || c >= 0x7F { return .failure(.badRequest("Invalid character in request target.")) }
            j += 1
        }
        guard te > ts else { return .failure(.badRequest("Malformed request line.")) }
        guard te < e else {
            return .failure(.badRequest("HTTP/0.9 requests are not supported."))
        }
        // version: exactly "HTTP/" DIGIT "." DIGIT
        let vs = te + 1
        guard e - vs == 8, b[vs] == 72, b[vs+1] == 84, b[vs+2] == 84, b[vs+3] == 80, b[vs+4] == 47,
              b[vs+6] == 46, (48...57).contains(b[vs+5]), (48...57).contains(b[vs+7]) else {
            return .failure(.badRequest("Malformed HTTP version."))
        }
        let major = Int(b[vs+5] - 48), minorRaw = Int(b[vs+7] - 48)
        guard major == 1 else { return .failure(.versionNotSupported) }
        let minor = minorRaw == 0 ? 0 : 1

        var target: String
        var path: String
        if b[ts] == 47 /* / */ {
            target = st.target(b, ts, te)
            let q = memchr(base + ts, 63 /* ? */, te - ts).map { UnsafeRawPointer($0) - base } ?? te
            path = q == te ? target : HeadLexer.string(b, ts, q)
        } else {
            target = HeadLexer.string(b, ts, te)
            if target.hasPrefix("http://") || target.hasPrefix("https://"),
               let slash = target.firstIndex(of: "/") {
                let rest = target[target.index(slash, offsetBy: 2)...]
                target = rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
            } else if !(target == "*" && method == "OPTIONS") {
                return .failure(.badRequest("Malformed request target."))
            }
            path = target.firstIndex(of: "?").map { String(target[..<$0]) } ?? target
        }

        var hostCount = 0
        var contentLength: Int? = nil
        var transferEncoding: String? = nil
        var connectionClose = false, connectionKeepAlive = false
        var expectContinue = false
        let hb = UnsafeRawBufferPointer(rebasing: b[headersStart..<headersEnd])
        func value(_ f: HeaderField) -> String { HeadLexer.string(hb, Int(f.valueStart), Int(f.valueEnd)) }
        for f in fields {
            switch f.known {
            case .host:
                hostCount += 1
            case .contentLength:
                if contentLength != nil { return .failure(.badRequest("Duplicate Content-Length header.")) }
                guard let n = DecimalDigits.value(hb[Int(f.valueStart)..<Int(f.valueEnd)], maxDigits: 15) else {
                    return .failure(.badRequest("Invalid Content-Length header."))
                }
                contentLength = Int(n)
            case .transferEncoding:
                transferEncoding = transferEncoding.map { $0 + "," + value(f) } ?? value(f)
            case .connection:
                HeaderList.forEach(hb, Int(f.valueStart), Int(f.valueEnd)) { t in
                    if HeaderList.equals(t, "close") { connectionClose = true }
                    if HeaderList.equals(t, "keep-alive") { connectionKeepAlive = true }
                }
            case .expect:
                if value(f).lowercased() == "100-continue" { expectContinue = true }
                else { return .failure(.expectationFailed("Unsupported expectation.")) }
            default:
                break
            }
        }
        if hostCount > 1 { return .failure(.badRequest("Multiple Host headers.")) }
        if hostCount == 0 && minor == 1 { return .failure(.badRequest("Missing Host header.")) }

        var framing = BodyFraming.none
        if let te = transferEncoding {
            if contentLength != nil {
                return .failure(.badRequest("Both Content-Length and Transfer-Encoding present."))
            }
            if minor == 0 { return .failure(.badRequest("Transfer-Encoding in an HTTP/1.0 request.")) }
            let codings = te.lowercasedCommaList()
            guard codings.last == "chunked" else {
                return .failure(.badRequest("Transfer-Encoding must end in chunked."))
            }
            guard codings.count == 1 else {
                return .failure(.notImplemented("Only the chunked transfer coding is supported."))
            }
            framing = .chunked
        } else if let n = contentLength, n > 0 {
            framing = .length(n)
        }
        let keepAlive = minor == 1 ? !connectionClose : (connectionKeepAlive && !connectionClose)
        let expects = expectContinue && framing != .none
        let h: HTTPRequestHead
        if let reused = st.reusableHead() {
            reused.refill(method: method, target: target, path: path, minorVersion: minor, raw: hb, fields: fields,
                          framing: framing, keepAlive: keepAlive, expectContinue: expects)
            h = reused
        } else {
            h = HTTPRequestHead(method: method, target: target, path: path, minorVersion: minor, raw: Array(hb),
                                fields: fields, framing: framing, keepAlive: keepAlive, expectContinue: expects)
        }
        st.spare = h.raw.capacity <= HeadScanState.maxSpareBytes ? h : nil
        return .complete(h, consumed: consumed)
    }
}
