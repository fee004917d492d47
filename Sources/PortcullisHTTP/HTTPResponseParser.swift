import PortcullisCore

/// Parses an upstream's response head. Like the request parser it is stateless over a buffer.
/// Upstream framing is checked as strictly as client framing: an ambiguous response (both
/// Content-Length and Transfer-Encoding, or a bad length) is a 502, never a guess.
public struct HTTPResponseParser: Sendable {
    public var maxHeaderBytes: Int
    public init(maxHeaderBytes: Int = 65536) { self.maxHeaderBytes = maxHeaderBytes }

    /// A head past `maxHeaderBytes`, however its bytes arrived.
    static let headTooLarge = GatewayError.upstreamBadResponse("Upstream response head too large.")

    /// `requestMethod` decides whether a body follows (HEAD never has one).
    public func parse(_ b: UnsafeRawBufferPointer, requestMethod: String) -> HeadParseResult<HTTPResponseHead> {
        var storage = ResponseHeadStorage()
        return parse(b, requestMethod: requestMethod, storage: &storage)
    }

    /// `parse`, building the head's header bytes and fields in `storage`'s arrays: an upstream
    /// connection keeps one, and once the previous response's head has been let go its arrays
    /// are refilled in place (no allocation per response). A head still held elsewhere keeps
    /// its bytes: the arrays are then copied on write, as any Swift array is.
    public func parse(_ b: UnsafeRawBufferPointer, requestMethod: String,
                      storage: inout ResponseHeadStorage) -> HeadParseResult<HTTPResponseHead> {
        let statusLine: (Int, Int, Int)
        switch HeadLexer.nextLine(b, from: 0) {
        case .incomplete:
            return b.count > maxHeaderBytes ? .failure(Self.headTooLarge) : .incomplete
        case .bareLF:
            return .failure(.upstreamBadResponse("Malformed upstream status line."))
        case .line(let s, let e, let n):
            if n > maxHeaderBytes { return .failure(Self.headTooLarge) }
            statusLine = (s, e, n)
        }
        // (A head far above the usual size does not keep its room for the connection's life.)
        if storage.raw.capacity > ResponseHeadStorage.keptBytes { storage = ResponseHeadStorage() }
        storage.fields.removeAll(keepingCapacity: storage.fields.capacity <= 64)
        if storage.fields.capacity < 16 { storage.fields.reserveCapacity(16) }
        let base = statusLine.2
        var pos = statusLine.2
        while true {
            switch HeadLexer.nextLine(b, from: pos) {
            case .incomplete:
                return b.count > maxHeaderBytes ? .failure(Self.headTooLarge) : .incomplete
            case .bareLF:
                return .failure(.upstreamBadResponse("Malformed upstream header section."))
            case .line(let s, let e, let next):
                // Over the limit whether the head came in one read or in many (as `.incomplete`).
                if next > maxHeaderBytes { return .failure(Self.headTooLarge) }
                if s == e { return finish(b, statusLine, &storage, base: base, end: s, next, requestMethod) }
                guard case .success(let f) = HeadLexer.field(b, s, e, base: base) else {
                    return .failure(.upstreamBadResponse("Malformed upstream header."))
                }
                storage.fields.append(f)
                pos = next
            }
        }
    }

    private func finish(_ b: UnsafeRawBufferPointer, _ line: (Int, Int, Int), _ storage: inout ResponseHeadStorage,
                        base: Int, end: Int, _ consumed: Int, _ method: String) -> HeadParseResult<HTTPResponseHead> {
        let fields = storage.fields
        let (s, e, _) = line
        // RFC 9112 §4: "HTTP/1.x" SP 3DIGIT SP reason, the status 100–599 and the reason made of
        // visible characters, spaces and tabs (it may be empty, the SP before it may not be).
        guard e - s >= 13, b[s] == 72, b[s+1] == 84, b[s+2] == 84, b[s+3] == 80, b[s+4] == 47,
              b[s+5] == 49, b[s+6] == 46, (48...57).contains(b[s+7]), b[s+8] == 32,
              (49...53).contains(b[s+9]), (48...57).contains(b[s+10]), (48...57).contains(b[s+11]),
              b[s+12] == 32 else {
            return .failure(.upstreamBadResponse("Malformed upstream status line."))
        }
        for i in (s + 13)..<e where !(b[i] == HeadLexer.HT || (b[i] >= 0x20 && b[i] < 0x7F)) {
            return .failure(.upstreamBadResponse("Malformed upstream status line."))
        }
        let minor = b[s+7] == 48 ? 0 : 1
        let status = Int(b[s+9] - 48) * 100 + Int(b[s+10] - 48) * 10 + Int(b[s+11] - 48)
        // The standard phrase (the usual case) is recognised on the bytes and kept as "" (the
        // prebuilt status line is used); only another phrase becomes a String.
        var reason = ""
        if e > s + 13, !HeadLexer.isLiteral(b, s + 13, e, HTTPStatus.reasonPhrase(status)) {
            reason = HeadLexer.string(b, s + 13, e)
        }
        var contentLength: Int? = nil
        var chunked = false, hasTE = false
        var close = false, keepAliveToken = false
        storage.raw.removeAll(keepingCapacity: true)
        storage.raw.append(bytes: UnsafeRawBufferPointer(rebasing: b[base..<end]))
        let raw = storage.raw
        for f in fields {
            switch f.known {
            case .contentLength:
                guard let n = DecimalDigits.value(raw[Int(f.valueStart)..<Int(f.valueEnd)], maxDigits: 15).map({ Int($0) }),
                      contentLength == nil || contentLength == n else {
                    return .failure(.upstreamBadResponse("Invalid upstream Content-Length."))
                }
                contentLength = n
            case .transferEncoding:
                hasTE = true
                var last = false
                raw.withUnsafeBytes { b in HeaderList.forEach(b, Int(f.valueStart), Int(f.valueEnd)) { last = HeaderList.equals($0, "chunked") } }
                chunked = last
            case .connection:
                raw.withUnsafeBytes { b in
                    HeaderList.forEach(b, Int(f.valueStart), Int(f.valueEnd)) { t in
                        if HeaderList.equals(t, "close") { close = true }
                        if HeaderList.equals(t, "keep-alive") { keepAliveToken = true }
                    }
                }
            default: break
            }
        }
        if hasTE && contentLength != nil {
            return .failure(.upstreamBadResponse("Upstream sent both Content-Length and Transfer-Encoding."))
        }
        var framing: BodyFraming
        if HTTPMethodName.isHEAD(method) || status < 200 || status == 204 || status == 304 {
            framing = .none
        } else if hasTE {
            framing = chunked ? .chunked : .untilClose
        } else if let n = contentLength {
            framing = n == 0 ? .none : .length(n)
        } else {
            framing = .untilClose
        }
        var keepAlive = minor == 1 ? !close : (keepAliveToken && !close)
        if framing == .untilClose { keepAlive = false }
        return .complete(HTTPResponseHead(status: status, reason: reason, minorVersion: minor, raw: raw,
                                          fields: fields, framing: framing, keepAlive: keepAlive),
                         consumed: consumed)
    }
}

/// The arrays a response head is built in (`HTTPResponseParser.parse(_:requestMethod:storage:)`),
/// kept by an upstream connection from one response to the next. Loop thread only, like the
/// connection.
public struct ResponseHeadStorage {
    var raw: [UInt8] = []
    var fields: [HeaderField] = []
    /// Header bytes kept for the next response at most (beyond: a fresh array next time).
    static let keptBytes = 8192
    public init() {}
}
