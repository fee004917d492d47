import PortcullisCore
import PortcullisHTTP
import PortcullisUpstream
import PortcullisPipeline

/// Writes one provider response to the client: the head rewritten (hop-by-hop and
/// `Connection`-named fields out, SSE anti-buffering headers, the request id and the serving
/// provider/model in), the body re-framed (chunked towards HTTP/1.1 clients when the provider
/// did not give a length), and a failure after the head ended cleanly (SSE `event: error`, else a
/// visible truncation). Owned by the `ProxyCoordinator`; reset per request; loop thread only.
public struct ResponseRelay {
    public private(set) var status = 0
    public private(set) var headSent = false
    public private(set) var bodyBytes = 0
    var chunked = false
    var noBody = false
    public private(set) var isSSE = false
    public var keepAlive = true
    /// The last two body bytes, to know whether an SSE event boundary was reached.
    var tail: (UInt8, UInt8) = (10, 10)

    public init() {}

    /// Queues the response head. `identity` lines (already formatted `name: value\r\n`) are
    /// added after the provider's fields, then `source`'s, which replace the provider's fields
    /// of the same names (`replacedNamePrefix`).
    mutating func head(_ h: HTTPResponseHead, request: RequestFacts, identity: [UInt8], extra: [UInt8],
                       source: ResponseHeaderSource? = nil, into out: ByteBuffer) {
        status = h.status
        headSent = true
        keepAlive = request.keepAlive
        out.append(StatusLine.bytes(h.status, reason: h.reason))
        h.raw.withUnsafeBytes { raw in
            // Names the provider's `Connection` lists besides hop-by-hop ones (dropped anyway;
            // `keep-alive`, the usual one, is one), folded (`HeaderList.folded`): bytes, no
            // String per element or field.
            var connectionListed: [[UInt8]] = []
            for f in h.fields {
                if f.known == .contentType { isSSE = h.valueHasPrefix(f, "text/event-stream") }
                if f.known == .connection {
                    HeaderList.forEach(raw, Int(f.valueStart), Int(f.valueEnd)) { t in
                        if !KnownHeader.classifyIgnoringCase(t).isHopByHop { connectionListed.append(HeaderList.folded(t)) }
                    }
                }
            }
            // "Name: value" straight from the provider's bytes. Lines spelled so already (as
            // most providers' are) and adjacent in its head go out as one run: one copy for
            // the lines between two dropped ones.
            var runStart = 0, runEnd = 0
            let replaced = source?.replacedNamePrefix
            for f in h.fields {
                if f.known.isHopByHop || f.known == .contentLength { continue }
                if f.known == .xRequestId && request.requestID != nil { continue }   // ours replaces it
                if isSSE && (f.known == .cacheControl || f.known == .xAccelBuffering) { continue }
                if !connectionListed.isEmpty && f.known == .other
                    && connectionListed.contains(where: { HeaderList.foldedEquals(raw, Int(f.nameStart), Int(f.nameEnd), $0) }) { continue }
                if let p = replaced, f.known == .other, f.nameHasPrefix(p, in: raw) { continue }   // the source's lines replace them
                let ns = Int(f.nameStart)
                if let end = f.plainLineEnd(in: raw) {
                    if ns != runEnd {
                        if runEnd > runStart { out.append(UnsafeRawBufferPointer(rebasing: raw[runStart..<runEnd])) }
                        runStart = ns
                    }
                    runEnd = end
                    continue
                }
                if runEnd > runStart { out.append(UnsafeRawBufferPointer(rebasing: raw[runStart..<runEnd])) }
                runStart = 0; runEnd = 0
                let ne = Int(f.nameEnd), vs = Int(f.valueStart), ve = Int(f.valueEnd)
                if f.isColonSpaceSpelled(in: raw) {
                    out.append(UnsafeRawBufferPointer(rebasing: raw[ns..<ve]))
                } else {
                    out.append(UnsafeRawBufferPointer(rebasing: raw[ns..<ne]))
                    out.append(StatusLine.colonSpace)
                    out.append(UnsafeRawBufferPointer(rebasing: raw[vs..<ve]))
                }
                out.append(StatusLine.crlf)
            }
            if runEnd > runStart { out.append(UnsafeRawBufferPointer(rebasing: raw[runStart..<runEnd])) }
        }
        if HTTPMethodName.isHEAD(request.method) || h.status == 204 || h.status == 304 {
            noBody = true
            if case .length(let n) = h.framing { out.append(StatusLine.contentLength); out.appendDecimal(n); out.append(StatusLine.crlf) }
        } else {
            switch h.framing {
            case .length(let n):
                out.append(StatusLine.contentLength); out.appendDecimal(n); out.append(StatusLine.crlf)
            case .none: out.append(StatusLine.contentLengthZero)
            case .chunked, .untilClose:
                if request.minorVersion >= 1 { chunked = true; out.append(StatusLine.chunked) }
                else { keepAlive = false }
            }
        }
        if isSSE { out.append(StatusLine.sseHeaders) }
        out.append(identity)
        if !extra.isEmpty { out.append(extra) }
        if let src = source {
            out.reserve(src.maxLineBytes)
            out.commitWrite(src.writeLines(to: UnsafeMutableRawBufferPointer(start: out.writePointer, count: out.writableBytes)))
        }
        if let id = request.requestID { out.append(StatusLine.requestID); out.append(id); out.append(StatusLine.crlf) }
        if !keepAlive { out.append(StatusLine.connectionClose) }
        out.append(StatusLine.crlf)
    }

    /// Queues body bytes (already de-chunked by the upstream side).
    mutating func body(_ bytes: UnsafeRawBufferPointer, into out: ByteBuffer) {
        guard !noBody, bytes.count > 0 else { return }
        if chunked {
            out.appendHex(bytes.count)
            out.append(StatusLine.crlf)
            out.append(bytes)
            out.append(StatusLine.crlf)
        } else {
            out.append(bytes)
        }
        bodyBytes += bytes.count
        tail = bytes.count >= 2 ? (bytes[bytes.count - 2], bytes[bytes.count - 1]) : (tail.1, bytes[0])
    }

    /// Queues the end of a complete body.
    mutating func end(into out: ByteBuffer) {
        if chunked && !noBody { out.append(StatusLine.lastChunk) }
    }

    /// Ends a response that failed after its head: an SSE stream gets an explicit error event and
    /// a clean end (field-notes #10); anything else is truncated (the connection closes), so the
    /// client cannot mistake it for success.
    /// `anthropicShape`: the client called Anthropic's API (`/v1/messages`): the event's data is
    /// written in its error shape.
    mutating func failAfterHead(_ error: GatewayError, anthropicShape: Bool = false, into out: ByteBuffer) {
        if status < 400 { status = error.status }
        if isSSE && chunked {
            var event = (tail == (10, 10)) ? "" : "\n\n"
            let data = anthropicShape ? String(decoding: ClientAPIErrors.anthropicBody(error), as: UTF8.self) : error.jsonBody
            event += "event: error\ndata: \(data)\n\n"
            let bytes = Array(event.utf8)
            out.appendHex(bytes.count); out.append(StatusLine.crlf); out.append(bytes); out.append(StatusLine.crlf)
            out.append(StatusLine.lastChunk)
        } else {
            keepAlive = false
        }
    }
}

/// What the relay needs to know about the client's request.
struct RequestFacts {
    let method: String
    let minorVersion: Int
    let keepAlive: Bool
    /// The id the answer carries (`server.response_headers: [request_id]`); nil: none of ours,
    /// and the provider's own `x-request-id`, if any, passes through.
    let requestID: RequestID?
}
