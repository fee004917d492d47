/// Prebuilt byte strings for response heads (no String formatting per response).
public enum StatusLine {
    public static let crlf: [UInt8] = [13, 10]
    public static let colonSpace: [UInt8] = [58, 32]
    public static let contentLength = Array("content-length: ".utf8)
    public static let chunked = Array("transfer-encoding: chunked\r\n".utf8)
    public static let sseHeaders = Array("cache-control: no-cache\r\nx-accel-buffering: no\r\n".utf8)
    public static let requestID = Array("x-request-id: ".utf8)
    public static let connectionClose = Array("connection: close\r\n".utf8)
    public static let contentLengthZero = Array("content-length: 0\r\n".utf8)
    public static let lastChunk = Array("0\r\n\r\n".utf8)
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
