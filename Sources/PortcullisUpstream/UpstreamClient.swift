import PortcullisCore
import PortcullisEventLoop
import PortcullisHTTP
import PortcullisConfig

/// A worker's door to the providers: its connection pool plus the shared resolver and TLS
/// contexts. One per event loop; loop thread only (the resolver and TLS contexts are shared
/// read-only across workers). Pools and TLS contexts are keyed by endpoint slot (scheme, host,
/// port, CA file), so they outlive a reload that keeps the endpoint.
public final class UpstreamClient: UpstreamAttemptStarter {
    public let loop: EventLoop
    let pool: UpstreamPool
    let resolver: HostResolver
    /// Endpoint slot → TLS context; replaced by `use(_:)` when a reload installs a generation.
    private(set) var tls: [Int: TLSClientContext]

    public init(loop: EventLoop, resolver: HostResolver, tlsContexts: [Int: TLSClientContext]) {
        self.loop = loop
        self.pool = UpstreamPool(loop: loop)
        self.resolver = resolver
        self.tls = tlsContexts
    }

    func poolKey(_ p: ProviderConfiguration) -> Int { p.poolSlot }

    func tlsContext(for p: ProviderConfiguration) -> TLSClientContext? { tls[p.poolSlot] }

    /// A reload: the new generation's TLS contexts; idle connections to endpoints it no longer
    /// uses are closed (in-flight ones finish and are then not pooled again).
    public func use(tlsContexts: [Int: TLSClientContext], endpoints: Set<Int>) {
        tls = tlsContexts
        live = endpoints
        pool.closeIdle(keeping: endpoints)
    }

    /// Endpoint slots of the current generation (nil: every slot; before the first reload).
    private(set) var live: Set<Int>?

    public func startAttempt(provider: ProviderConfiguration, timeouts: RouteTimeouts, method: String, head: __owned [UInt8],
                             body: __owned [UInt8], deadline: UInt64, delegate: UpstreamResponseDelegate) -> UpstreamAttempt {
        let x = UpstreamExchange(client: self, provider: provider, timeouts: timeouts, method: method,
                                 head: head, body: body, deadline: deadline, delegate: delegate)
        x.start()
        return x
    }

    public func shutdown() { pool.closeAll() }

    /// One TLS context per https endpoint (start-up and reload, off the loops: may read CA
    /// files). A reload reuses the previous generation's context of an unchanged endpoint.
    public static func makeTLSContexts(_ providers: [ProviderConfiguration],
                                       reusing previous: [Int: TLSClientContext] = [:]) throws -> [Int: TLSClientContext] {
        var out: [Int: TLSClientContext] = [:]
        for p in providers where p.baseURL.tls && out[p.poolSlot] == nil {
            out[p.poolSlot] = try previous[p.poolSlot] ?? TLSClientContext(caFile: p.caFile)
        }
        return out
    }
}
