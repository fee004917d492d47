import PortcullisCore
import PortcullisHTTP

/// Which of a route's timeouts expired.
public enum UpstreamTimeoutKind: String, Sendable {
    case connect, firstByte = "first_byte", idle, total
}

/// Why an upstream exchange failed. `gatewayError` is the only mapping to a client status.
public enum UpstreamFailure: Error, Sendable, Equatable {
    case connectFailed(String)
    case tls(String)
    case reset(String)
    case timeout(UpstreamTimeoutKind)
    case badResponse(String)

    public var gatewayError: GatewayError {
        switch self {
        case .connectFailed(let m): .upstreamConnectFailed("Upstream connection failed: \(m).")
        case .tls(let m): .upstreamConnectFailed("Upstream \(m).")
        case .reset(let m): .upstreamBadResponse("Upstream connection lost: \(m).")
        case .timeout(let k): .upstreamTimeout("Upstream \(k.rawValue) timeout expired.")
        case .badResponse(let m): .upstreamBadResponse(m)
        }
    }

    /// Short label for logs and metrics.
    public var label: String {
        switch self {
        case .connectFailed: "connect_failed"
        case .tls: "tls_failed"
        case .reset: "reset"
        case .timeout(let k): "timeout_\(k.rawValue)"
        case .badResponse: "bad_response"
        }
    }
}

/// Receives one exchange's response as it arrives. Loop thread only. Each method may call
/// `UpstreamExchange.cancel()` (e.g. the client write failed); the exchange checks for that.
public protocol UpstreamResponseDelegate: AnyObject {
    func upstreamDidReceiveHead(_ head: HTTPResponseHead)
    /// Body bytes, already de-chunked, valid only during the call. Return false to ask the
    /// exchange to stop reading until `resumeReading()` (the client is slower than the provider).
    func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool
    func upstreamDidFinish()
    /// `afterHead` tells whether `upstreamDidReceiveHead` was already called.
    func upstreamDidFail(_ failure: UpstreamFailure, afterHead: Bool)
}

/// Serializes the head of an upstream request: origin-form target under the provider's base
/// path, Host, the given headers, and Content-Length (the body is always sent whole).
public enum UpstreamRequestHead {
    public static func serialize(method: String, basePath: String, target: String, authority: String,
                                 headers: [HTTPHeader], bodyLength: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + target.utf8.count + headers.count * 64)
        func put(_ s: String) {
            var s = s
            s.withUTF8 { out.append(contentsOf: $0) }
        }
        put(method); out.append(32); put(basePath); put(target); put(" HTTP/1.1\r\nhost: ")
        put(authority); out.append(13); out.append(10)
        for h in headers {
            put(h.name); out.append(58); out.append(32)
            put(h.value); out.append(13); out.append(10)
        }
        if bodyLength > 0 || method == "POST" || method == "PUT" || method == "PATCH" {
            put("content-length: "); put(String(bodyLength)); out.append(13); out.append(10)
        }
        out.append(13); out.append(10)
        return out
    }
}
