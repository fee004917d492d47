/// Prebuilt byte strings for response heads (no String formatting per response).
public enum StatusLine {
    // Computed literals, not stored `[UInt8]`s: a stored global costs a `swift_once` check and
    // a retain per use, from another module; a `StaticString` is a pointer and a length.
    @inlinable public static var crlf: StaticString { "\r\n" }
    @inlinable public static var colonSpace: StaticString { ": " }
    @inlinable public static var contentLength: StaticString { "content-length: " }
    @inlinable public static var chunked: StaticString { "transfer-encoding: chunked\r\n" }
    @inlinable public static var sseHeaders: StaticString { "cache-control: no-cache\r\nx-accel-buffering: no\r\n" }
    @inlinable public static var requestID: StaticString { "x-request-id: " }
    @inlinable public static var connectionClose: StaticString { "connection: close\r\n" }
    @inlinable public static var contentLengthZero: StaticString { "content-length: 0\r\n" }
    @inlinable public static var lastChunk: StaticString { "0\r\n\r\n" }
    private static let common: [[UInt8]] = (0..<600).map { code in
        Array("HTTP/1.1 \(code) \(HTTPStatus.reason(code))\r\n".utf8)
    }

    /// "HTTP/1.1 <code> <reason>\r\n"; the standard reason unless the upstream gave its own.
    public static func bytes(_ code: Int, reason: String) -> [UInt8] {
        if code >= 100 && code < 600 && (reason.isEmpty || reason == HTTPStatus.reason(code)) { return common[code] }
        let r = reason.isEmpty ? HTTPStatus.reason(code) : reason
        return Array("HTTP/1.1 \(code) \(r)\r\n".utf8)
    }
}
