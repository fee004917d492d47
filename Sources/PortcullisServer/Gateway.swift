import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisConfig
import PortcullisUpstream
import PortcullisAuth
import PortcullisRouter
import PortcullisLimiter
#if canImport(Glibc)
import Glibc
#endif

/// The running daemon: binds listeners, resolves provider hosts, starts one worker thread per
/// configured worker, and turns signals into actions on the main thread (which runs no loop).
public final class Gateway {
    let configuration: GatewayConfiguration
    private var loops: [EventLoop] = []

    public init(configuration: GatewayConfiguration) {
        self.configuration = configuration
    }

    /// Runs until SIGTERM or SIGINT. Returns the process exit code.
    public func run() -> Int32 {
        Log.setLevel(configuration.log.level)
        // Signals: block in every thread; the main thread takes them with sigwait.
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)

        Syscall.raiseFileLimit()
        let resolver = HostResolver()
        for p in configuration.providers {
            let addrs = resolver.resolveBlocking(host: p.baseURL.host, port: p.baseURL.port)
            if addrs.isEmpty { Log.warning("provider \(p.name): \(p.baseURL.host) did not resolve; requests to it get 502 until it does") }
            if p.apiKeyEnv != nil && p.apiKey == nil {
                Log.warning("provider \(p.name): \(p.apiKeyEnv ?? "") is not set; requests to it will fail with 500")
            }
        }
        resolver.startRefreshing(hosts: configuration.providers.map { ($0.baseURL.host, $0.baseURL.port) })
        let tls: [String: TLSClientContext]
        do { tls = try UpstreamClient.makeTLSContexts(configuration.providers) } catch {
            Log.error("\(error)")
            return 1
        }

        let keyRing: JWTKeyRing?
        do { keyRing = try Gateway.loadKeyRing(configuration) } catch {
            Log.error("\(error)")
            return 1
        }
        if configuration.auth?.jwt == nil && !configuration.routes.contains(where: { $0.hmac != nil }) {
            Log.warning("no auth configured: requests are proxied without a verified tenant (demo mode)")
        }

        let workers = configuration.server.workers
        var fdsPerWorker: [[Int32]] = []
        do {
            for _ in 0..<workers {
                var fds: [Int32] = []
                for a in configuration.server.listen { fds.append(try Sockets.listen(on: a)) }
                fdsPerWorker.append(fds)
            }
            for i in 0..<workers { loops.append(try EventLoop(index: i)) }
        } catch {
            Log.error("\(error)")
            return 1
        }

        let config = configuration
        let registry = WorkerRegistry()
        let routerMetrics = RouterMetrics(targetIDs: configuration.models.targets.map(\.id))
        let limitStore = MemoryLimitStore()   // shared by the workers (the embedded default)
        let limiterHealth = LimiterHealth()
        // Resolved here, once: hiredis would resolve a name with a blocking call on a loop.
        let redisAddress = configuration.redis.flatMap { resolver.resolveBlocking(host: $0.host, port: $0.port).first }
        if let r = configuration.redis, redisAddress == nil {
            Log.error("redis: \(r.host) does not resolve")
            return 1
        }
        for i in 0..<workers {
            let loop = loops[i]
            let fds = fdsPerWorker[i]
            spawnThread(name: "portcullis-w\(i)") {
                do {
                    let w = try Worker(loop: loop, configuration: config, listenFDs: fds, resolver: resolver, tls: tls, keyRing: keyRing,
                                       routerMetrics: routerMetrics, limitStore: limitStore,
                                       limiterHealth: limiterHealth, redisAddress: redisAddress)
                    registry.add(loop) { w.beginDrain() }
                    loop.run()
                    w.stopListening()
                    w.upstream.shutdown()
                    registry.finished()
                } catch {
                    Log.error("worker \(i): \(error)")
                    exit(1)
                }
            }
        }
        let addrs = configuration.server.listen.map(\.description).joined(separator: ", ")
        Log.info("listening on \(addrs) with \(workers) worker(s); config \(configuration.source)")

        while true {
            var sig: Int32 = 0
            if sigwait(&set, &sig) != 0 { continue }
            switch sig {
            case SIGTERM, SIGINT:
                return drain(registry, signal: sig, set: &set)
            case SIGHUP:
                reloadKeys(keyRing)
            default:
                continue
            }
        }
    }
}

extension Gateway {
    /// Graceful shutdown: every worker stops accepting and finishes its in-flight requests; the
    /// process exits when all are done, at `drain_timeout`, or on a second SIGTERM/SIGINT.
    func drain(_ registry: WorkerRegistry, signal sig: Int32, set: inout sigset_t) -> Int32 {
        let timeout = configuration.server.drainTimeout
        Log.info("received signal \(sig): draining (up to \(timeout)); send it again to stop at once")
        registry.drainAll()
        let deadline = MonotonicClock.now() &+ timeout.nanoseconds
        var wait = timespec(tv_sec: 0, tv_nsec: 50_000_000)
        while registry.running > 0 && MonotonicClock.now() < deadline {
            let s = sigtimedwait(&set, nil, &wait)
            if s == SIGTERM || s == SIGINT {
                Log.info("second signal: stopping now")
                break
            }
        }
        if registry.running > 0 { Log.warning("drain ended with \(registry.running) worker(s) still busy") }
        for l in loops { l.stop() }
        return 0
    }

    /// Loads the JWT keys (nil when JWT auth is not configured). Start-up and `portcullis check`.
    public static func loadKeyRing(_ c: GatewayConfiguration) throws -> JWTKeyRing? {
        guard let jwt = c.auth?.jwt else { return nil }
        let keys = try KeySetLoader.load(jwt, environment: ProcessEnvironment.current())
        return JWTKeyRing(keys)
    }

    /// The reload entry point for key rotation (SIGHUP): re-reads keys and `jwks_file`; on
    /// failure the old keys stay in force. (Whole-config reload arrives with the operations issue.)
    func reloadKeys(_ ring: JWTKeyRing?) {
        guard let ring, let jwt = configuration.auth?.jwt else {
            Log.info("SIGHUP: no JWT keys to reload (whole-config reload is not implemented yet)")
            return
        }
        switch ring.reload(jwt, environment: ProcessEnvironment.current()) {
        case .success(let n): Log.info("SIGHUP: reloaded \(n) JWT key(s)")
        case .failure(let e): Log.error("SIGHUP: key reload failed, keeping the previous keys: \(e)")
        }
    }

}

/// The running workers, for signal handling on the main thread. Each worker thread registers a
/// drain action (run on its own loop) and reports when its loop has returned.
final class WorkerRegistry: @unchecked Sendable {
    private var drains: [(EventLoop, @Sendable () -> Void)] = []
    private var active = 0
    private var lock = pthread_mutex_t()

    init() { pthread_mutex_init(&lock, nil) }

    func add(_ loop: EventLoop, drain: @escaping () -> Void) {
        nonisolated(unsafe) let d = drain   // runs only on `loop`'s own thread
        pthread_mutex_lock(&lock); drains.append((loop, { d() })); active += 1; pthread_mutex_unlock(&lock)
    }

    func finished() { pthread_mutex_lock(&lock); active -= 1; pthread_mutex_unlock(&lock) }

    var running: Int { pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }; return active }

    func drainAll() {
        pthread_mutex_lock(&lock)
        let all = drains
        pthread_mutex_unlock(&lock)
        for (loop, d) in all { loop.execute(d) }
    }
}
