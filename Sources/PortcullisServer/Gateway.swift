import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisConfig
import PortcullisUpstream
import PortcullisAuth
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

        Gateway.raiseFileLimit()
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
        for i in 0..<workers {
            let loop = loops[i]
            let fds = fdsPerWorker[i]
            spawnThread(name: "portcullis-w\(i)") {
                do {
                    let w = try Worker(loop: loop, configuration: config, listenFDs: fds, resolver: resolver, tls: tls, keyRing: keyRing)
                    loop.run()
                    w.stopListening()
                    w.upstream.shutdown()
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
                Log.info("received signal \(sig), shutting down")
                for l in loops { l.stop() }
                return 0
            case SIGHUP:
                reloadKeys(keyRing)
            default:
                continue
            }
        }
    }
}

extension Gateway {
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

    /// Raises the soft RLIMIT_NOFILE to the hard limit: every proxied stream holds two fds.
    static func raiseFileLimit() {
        var r = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &r) == 0, r.rlim_cur < r.rlim_max else { return }
        r.rlim_cur = r.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &r)
    }
}
