import PortcullisCore
import PortcullisEventLoop
import PortcullisHTTP
import PortcullisConfig

/// A worker's door to the providers: its connection pool plus the shared resolver and TLS
/// contexts. One per event loop; loop thread only (the resolver and TLS contexts are shared
/// read-only across workers).
public final class UpstreamClient: UpstreamAttemptStarter {
    public let loop: EventLoop
    let pool: UpstreamPool
    let resolver: HostResolver
    let tls: [String: TLSClientContext]

    public init(loop: EventLoop, resolver: HostResolver, tlsContexts: [String: TLSClientContext]) {
        self.loop = loop
        self.pool = UpstreamPool(loop: loop)
        self.resolver = resolver
        self.tls = tlsContexts
    }

    func poolKey(_ p: ProviderConfiguration) -> Int { p.index }

    func tlsContext(for p: ProviderConfiguration) -> TLSClientContext? { tls[p.name] }

    /// Starts sending `head` + `body` to `provider`; the response streams to `delegate`.
    public func startExchange(provider: ProviderConfiguration, timeouts: RouteTimeouts, method: String,
                              head: [UInt8], body: [UInt8], delegate: UpstreamResponseDelegate) -> UpstreamExchange {
        let x = UpstreamExchange(client: self, provider: provider, timeouts: timeouts, method: method,
                                 head: head, body: body, delegate: delegate)
        x.start()
        return x
    }

    public func startAttempt(provider: ProviderConfiguration, timeouts: RouteTimeouts, method: String, head: [UInt8],
                             body: [UInt8], deadline: UInt64, delegate: UpstreamResponseDelegate) -> UpstreamAttempt {
        let x = UpstreamExchange(client: self, provider: provider, timeouts: timeouts, method: method,
                                 head: head, body: body, deadline: deadline, delegate: delegate)
        x.start()
        return x
    }

    public func shutdown() { pool.closeAll() }

    /// Builds one TLS context per https provider (start-up and reload; may read CA files).
    public static func makeTLSContexts(_ providers: [ProviderConfiguration]) throws -> [String: TLSClientContext] {
        var out: [String: TLSClientContext] = [:]
        for p in providers where p.baseURL.tls {
            out[p.name] = try TLSClientContext(caFile: p.caFile)
        }
        return out
    }
}
