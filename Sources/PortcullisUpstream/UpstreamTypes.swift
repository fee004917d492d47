import PortcullisCore
import PortcullisHTTP
import PortcullisConfig

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
    /// Whether the failure is a timeout (metrics group them).
    public var isTimeout: Bool { if case .timeout = self { true } else { false } }

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

/// How far an exchange had got when it failed: what a retry elsewhere may assume.
public enum UpstreamFailurePhase: String, Sendable {
    /// Nothing of the request reached the provider (resolve, connect, TLS).
    case beforeRequestWritten = "before_request"
    /// The request was (at least partly) written; no response head came back.
    case awaitingResponse = "awaiting_response"
    /// The response head arrived (and was handed to the delegate).
    case afterHead = "after_head"
}

/// An attempt in flight, as its owner sees it (`UpstreamExchange`; test doubles in unit tests).
/// Loop thread only.
public protocol UpstreamAttempt: AnyObject {
    var isDone: Bool { get }
    func pauseReading()
    func resumeReading()
    /// Stops the attempt at once (RST); its delegate hears nothing more.
    func cancel()
}

/// Starts attempts (`UpstreamClient`; a scripted double in unit tests).
public protocol UpstreamAttemptStarter: AnyObject {
    /// Starts sending `head` + `body` to `provider`; the response streams to `delegate`, which
    /// may hear of a failure before this returns. `deadline`: the request's overall end (the
    /// route's `total` across every attempt), monotonic nanoseconds.
    /// `head` and `body` are taken (`__owned`): the exchange keeps them, and a caller done with
    /// its arrays hands them over without a retain and a release each.
    func startAttempt(provider: ProviderConfiguration, timeouts: RouteTimeouts, method: String, head: __owned [UInt8],
                      body: __owned [UInt8], deadline: UInt64, delegate: UpstreamResponseDelegate) -> UpstreamAttempt
}

/// Receives one exchange's response as it arrives. Loop thread only. Each method may call
/// `UpstreamExchange.cancel()` (e.g. the client write failed); the exchange checks for that.
public protocol UpstreamResponseDelegate: AnyObject {
    func upstreamDidReceiveHead(_ head: HTTPResponseHead)
    /// Body bytes, already de-chunked, valid only during the call. Return false to ask the
    /// exchange to stop reading until `resumeReading()` (the client is slower than the provider).
    func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool
    func upstreamDidFinish()
    /// `phase` tells how far the exchange got (`.afterHead`: `upstreamDidReceiveHead` was called).
    func upstreamDidFail(_ failure: UpstreamFailure, phase: UpstreamFailurePhase)
    /// Everything one read from the provider brought has been delivered and the response goes
    /// on: what the delegate queued for the client can leave now (one write per provider read,
    /// as nginx's unbuffered proxying does), not at the end of the loop iteration, after every
    /// other connection's reads of that iteration.
    func upstreamReadEnded()
}

/// An exchange's reference to its delegate: unretained, and called through a guaranteed
/// reference (`GuaranteedRef`), so a call costs no retain and release. Sound because the
/// delegate (the coordinator) owns the exchange and is owned by its client connection, which a
/// loop keeps until the end of the iteration it closed in; every end of an exchange clears its
/// reference before calling, so a finished exchange calls nobody.
typealias DelegateRef = GuaranteedRef<any UpstreamResponseDelegate.Type>

extension GuaranteedRef where Callee == any UpstreamResponseDelegate.Type {
    init(delegate d: UpstreamResponseDelegate) { self.init(d, type: Swift.type(of: d)) }
    func upstreamDidReceiveHead(_ head: HTTPResponseHead) { type.guaranteedDidReceiveHead(object, head) }
    func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool { type.guaranteedDidReceiveBody(object, bytes) }
    func upstreamDidFinish() { type.guaranteedDidFinish(object) }
    func upstreamDidFail(_ f: UpstreamFailure, phase: UpstreamFailurePhase) { type.guaranteedDidFail(object, f, phase) }
    func upstreamReadEnded() { type.guaranteedReadEnded(object) }
}

extension UpstreamResponseDelegate {
    static func guaranteedDidReceiveHead(_ p: UnsafeMutableRawPointer, _ h: HTTPResponseHead) {
        withGuaranteed(p, as: Self.self) { $0.upstreamDidReceiveHead(h) }
    }
    static func guaranteedDidReceiveBody(_ p: UnsafeMutableRawPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        withGuaranteed(p, as: Self.self) { $0.upstreamDidReceiveBody(b) }
    }
    static func guaranteedDidFinish(_ p: UnsafeMutableRawPointer) { withGuaranteed(p, as: Self.self) { $0.upstreamDidFinish() } }
    static func guaranteedDidFail(_ p: UnsafeMutableRawPointer, _ f: UpstreamFailure, _ phase: UpstreamFailurePhase) {
        withGuaranteed(p, as: Self.self) { $0.upstreamDidFail(f, phase: phase) }
    }
    static func guaranteedReadEnded(_ p: UnsafeMutableRawPointer) { withGuaranteed(p, as: Self.self) { $0.upstreamReadEnded() } }
}

extension UpstreamResponseDelegate {
    public func upstreamReadEnded() {}
}

/// Serializes the head of an upstream request: origin-form target under the provider's base
/// path, Host, the given header lines, identity lines, provider lines (its credential) and extra
/// lines (`name: value\r\n`…, each block copied as it is) and Content-Length (the body is always
/// sent whole).
public enum UpstreamRequestHead {
    /// With `bodyInline`, the body follows the head in the same bytes (`writeBody` writes its
    /// `bodyLength` bytes at the pointer it is given): one buffer and one write for a body the
    /// caller builds anyway (an alias request's, its model rewritten), where a body of its own
    /// would be one more allocation and copy. Keep such bodies small: the whole request is
    /// built on the stack first.
    public static func serialize(method: String, basePath: String, target: String, authority: String,
                                 headerLines: [UInt8], identityLines: [UInt8] = [], providerLines: [UInt8] = [],
                                 extraLines: [UInt8] = [], bodyLength: Int, bodyInline: Bool = false,
                                 writeBody: (UnsafeMutableRawPointer) -> Void = { _ in }) -> [UInt8] {
        let inlineBody = bodyInline ? bodyLength : 0
        let hasLength = bodyLength > 0 || method == "POST" || method == "PUT" || method == "PATCH"
        var total = method.utf8.count + 1 + basePath.utf8.count + target.utf8.count + 17 + authority.utf8.count + 2 + 2
        total += headerLines.count + identityLines.count + providerLines.count + extraLines.count + inlineBody
        if hasLength { total += 16 + 20 + 2 }
        // Filled with memcpy in a scratch buffer on the stack (sized for the longest
        // Content-Length), then copied into one array of the exact size: `Array(_:)` of a raw
        // buffer is specialised, where `Array(unsafeUninitializedCapacity:)` looks the storage
        // type up at run time (~350 instructions a request).
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: total) { buf -> [UInt8] in
            guard let dst = buf.baseAddress else { return [] }
            var at = 0
            func put(_ src: UnsafeRawBufferPointer) {
                if let b = src.baseAddress { UnsafeMutableRawPointer(dst + at).copyMemory(from: b, byteCount: src.count) }
                at += src.count
            }
            func put(_ s: String) { s.withUTF8Bytes { put($0) } }
            func put(_ lines: [UInt8]) { if !lines.isEmpty { lines.withUnsafeBytes { put($0) } } }
            func put(_ s: StaticString) {
                (dst + at).update(from: s.utf8Start, count: s.utf8CodeUnitCount)
                at += s.utf8CodeUnitCount
            }
            put(method); put(" "); put(basePath); put(target); put(" HTTP/1.1\r\nhost: "); put(authority); put("\r\n")
            put(headerLines); put(identityLines); put(providerLines); put(extraLines)
            if hasLength {
                put("content-length: ")
                var w = UnsafeByteWriter(UnsafeMutableBufferPointer(start: dst + at, count: 20))
                w.putDecimal(Int64(bodyLength))
                at += w.count
                put("\r\n")
            }
            put("\r\n")
            if inlineBody > 0 {
                writeBody(UnsafeMutableRawPointer(dst + at))
                at += inlineBody
            }
            return Array(UnsafeRawBufferPointer(start: dst, count: at))
        }
    }
}
