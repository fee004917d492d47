import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisConfig
import PortcullisUpstream
import PortcullisAuth
import PortcullisRouter
import PortcullisLimiter
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The running daemon: binds listeners, resolves provider hosts, starts one worker thread per
/// configured worker, and turns signals into actions on the main thread (which runs no loop):
/// SIGTERM/SIGINT drain, SIGHUP reloads the whole configuration. Speaks sd_notify when run by
/// systemd (`Type=notify`), including the watchdog.
public final class Gateway {
    /// The file to re-read on SIGHUP; nil: the embedded default (a reload re-parses it).
    let configPath: String?
    private var generation: SharedGeneration?
    private let initial: GatewayConfiguration
    private var loops: [EventLoop] = []
    let process: ProcessState
    let notifier = SystemdNotifier(environment: ProcessEnvironment.current())
    let heartbeats: LoopHeartbeats

    public init(configuration: GatewayConfiguration, configPath: String? = nil) {
        // Block the handled signals before any thread exists (threads inherit the mask): only
        // the main thread takes them, with sigwait. A thread started earlier with SIGHUP
        // unblocked would let a reload signal kill the process.
        var set = Gateway.handledSignals
        pthread_sigmask(SIG_BLOCK, &set, nil)
        self.initial = configuration
        self.configPath = configPath
        self.process = ProcessState(configuration)
        self.heartbeats = LoopHeartbeats(count: configuration.server.workers)
    }

    /// Runs until SIGTERM or SIGINT. Returns the process exit code.
    public func run() -> Int32 {
        let configuration = initial
        Log.setLevel(configuration.log.level)
        // Signals: blocked in every thread since `init`; the main thread takes them with sigwait.
        var set = Gateway.handledSignals

        Syscall.raiseFileLimit()
        let first: SharedGeneration
        do { first = try prepare(configuration, number: 1, previous: nil) } catch {
            Log.error("\(error)")
            return 1
        }
        generation = first
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

        let registry = WorkerRegistry()
        let process = self.process
        for i in 0..<workers {
            let loop = loops[i]
            let fds = fdsPerWorker[i]
            spawnThread(name: "portcullis-w\(i)") {
                do {
                    let w = try Worker(loop: loop, generation: first, process: process, listenFDs: fds)
                    registry.add(loop, drain: { w.beginDrain() }, install: { w.install($0) })
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
        registry.waitUntilRegistered(workers)
        let addrs = configuration.server.listen.map(\.description).joined(separator: ", ")
        Log.info("listening on \(addrs) with \(workers) worker(s); config \(configuration.source)")
        notifier.send("READY=1", "STATUS=\(status())")

        var nextBeat = MonotonicClock.now()
        while true {
            var sig: Int32 = 0
            if let interval = notifier.watchdogIntervalNanos {
                let now = MonotonicClock.now()
                if now >= nextBeat {
                    watchdogTick()
                    nextBeat = now &+ interval
                }
                let wait = min(nextBeat &- min(nextBeat, MonotonicClock.now()), 1_000_000_000)
                var ts = timespec(tv_sec: Int(wait / 1_000_000_000), tv_nsec: Int(wait % 1_000_000_000))
                sig = sigtimedwait(&set, nil, &ts)
                if sig < 0 { continue }
            } else if sigwait(&set, &sig) != 0 { continue }
            switch sig {
            case SIGTERM, SIGINT:
                notifier.send("STOPPING=1", "STATUS=draining")
                return drain(registry, signal: sig, set: &set)
            case SIGHUP:
                reload(registry)
            default:
                continue
            }
        }
    }

    static var handledSignals: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&set, s) }
        return set
    }

    /// Everything a generation needs that may block (files, DNS, CA bundles), done here on the
    /// main thread, never on a loop.
    func prepare(_ c: GatewayConfiguration, number: Int, previous: SharedGeneration?) throws -> SharedGeneration {
        let resolver = process.resolver
        for p in c.providers {
            let addrs = resolver.resolveBlocking(host: p.baseURL.host, port: p.baseURL.port)
            if addrs.isEmpty { Log.warning("provider \(p.name): \(p.baseURL.host) did not resolve; requests to it get 502 until it does") }
            if p.apiKeyEnv != nil && p.apiKey == nil {
                Log.warning("provider \(p.name): \(p.apiKeyEnv ?? "") is not set; requests to it will fail with 500")
            }
        }
        let tls = try UpstreamClient.makeTLSContexts(c.providers, reusing: previous?.tls ?? [:])
        let ring = try Gateway.loadKeyRing(c)
        let redisAddress = c.redis.flatMap { resolver.resolveBlocking(host: $0.host, port: $0.port).first }
        if let r = c.redis, redisAddress == nil { throw GatewayStartError("redis: \(r.host) does not resolve") }
        resolver.track(hosts: c.providers.map { ($0.baseURL.host, $0.baseURL.port) })
        return SharedGeneration(number: number, configuration: c, keyRing: ring, tls: tls, redisAddress: redisAddress)
    }

    func status() -> String {
        guard let g = generation else { return "starting" }
        let c = g.configuration
        return "serving on \(c.server.listen.map(\.description).joined(separator: ",")), \(c.server.workers) worker(s), config generation \(g.number) (\(c.providers.count) providers, \(c.routes.count) routes)"
    }

    /// SIGHUP: reads and validates the whole configuration off the loops. Valid → each worker
    /// switches at its next request; invalid → the old generation stays, the error is logged
    /// with file:line:col and counted. Listeners never close.
    func reload(_ registry: WorkerRegistry) {
        guard let old = generation else { return }
        notifier.send("RELOADING=1", "MONOTONIC_USEC=\(SystemdNotifier.monotonicMicros())", "STATUS=reloading")
        defer { notifier.send("READY=1", "STATUS=\(status())") }
        let next: GatewayConfiguration
        do {
            if let path = configPath { next = try ConfigurationLoader.load(file: path) }
            else { next = try ConfigurationLoader.parse(DefaultConfiguration.yaml, file: "<embedded default>", environment: ProcessEnvironment.current()) }
        } catch {
            return reloadFailed("\(error)")
        }
        let was = old.configuration.server
        if next.server.listen != was.listen || next.server.workers != was.workers {
            return reloadFailed("\(next.source): server.listen and server.workers cannot change on reload (restart the service to apply them)")
        }
        let g: SharedGeneration
        do { g = try prepare(next, number: old.number + 1, previous: old) } catch {
            return reloadFailed("\(error)")
        }
        generation = g
        Log.setLevel(next.log.level)
        process.accessLog.capacity.store(next.log.bufferBytes, ordering: .relaxed)
        if !registry.installAll(g) { Log.warning("SIGHUP: a worker did not take generation \(g.number) within 5 s (it will when its loop runs)") }
        process.metrics.reloadsOK.add(1, ordering: .relaxed)
        process.metrics.generation.store(g.number, ordering: .relaxed)
        Log.info("SIGHUP: configuration generation \(g.number) loaded from \(next.source); new requests use it, requests in flight finish on generation \(old.number)")
    }

    private func reloadFailed(_ why: String) {
        process.metrics.reloadsFailed.add(1, ordering: .relaxed)
        Log.error("SIGHUP: reload failed, keeping configuration generation \(generation?.number ?? 0): \(why)")
    }

    /// Sends `WATCHDOG=1` only when every loop ran the ping posted at the previous tick: a
    /// stuck worker stops the pings and systemd restarts the process.
    func watchdogTick() {
        if heartbeats.allAnswered() { notifier.send("WATCHDOG=1") }
        else { Log.warning("watchdog: a worker loop did not answer; not pinging systemd") }
        heartbeats.ping(loops)
    }
}

/// Liveness of the worker loops for the systemd watchdog: the main thread posts a ping to
/// every loop; each loop records that it ran it.
final class LoopHeartbeats: Sendable {
    private let posted = Atomic<Int>(0)
    private let answered: [Beat]
    final class Beat: Sendable { let value = Atomic<Int>(0) }

    init(count: Int) { answered = (0..<max(1, count)).map { _ in Beat() } }

    func ping(_ loops: [EventLoop]) {
        let n = posted.add(1, ordering: .relaxed).newValue
        for (i, l) in loops.enumerated() where i < answered.count {
            let beat = answered[i]
            l.execute { beat.value.store(n, ordering: .relaxed) }
        }
    }

    /// Whether every loop answered the latest ping (true before the first one).
    func allAnswered() -> Bool {
        let n = posted.load(ordering: .relaxed)
        return answered.allSatisfy { $0.value.load(ordering: .relaxed) >= n }
    }
}

struct GatewayStartError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension Gateway {
    /// Graceful shutdown: every worker stops accepting and finishes its in-flight requests; the
    /// process exits when all are done, at `drain_timeout`, or on a second SIGTERM/SIGINT.
    func drain(_ registry: WorkerRegistry, signal sig: Int32, set: inout sigset_t) -> Int32 {
        let timeout = generation?.configuration.server.drainTimeout ?? initial.server.drainTimeout
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
        process.accessLog.flush()
        return 0
    }

    /// Loads the JWT keys (nil when JWT auth is not configured). Start-up, reload and
    /// `portcullis check`.
    public static func loadKeyRing(_ c: GatewayConfiguration) throws -> JWTKeyRing? {
        guard let jwt = c.auth?.jwt else { return nil }
        let keys = try KeySetLoader.load(jwt, environment: ProcessEnvironment.current())
        return JWTKeyRing(keys)
    }
}

/// The running workers, for signal handling on the main thread. Each worker thread registers a
/// drain action and an install action (both run on its own loop) and reports when its loop has
/// returned. A pthread mutex (not `Synchronization.Mutex`): ThreadSanitizer models pthread locks,
/// and this lock is the one contended by several threads at start-up.
final class WorkerRegistry: @unchecked Sendable {
    private struct Entry { let loop: EventLoop; let drain: @Sendable () -> Void; let install: @Sendable (SharedGeneration) -> Void }
    private var entries: [Entry] = []
    private var active = 0
    private let lock: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return body()
    }

    func add(_ loop: EventLoop, drain: @escaping () -> Void, install: @escaping (SharedGeneration) -> Void) {
        // Both run only on `loop`'s own thread (posted with `execute`).
        nonisolated(unsafe) let d = drain
        nonisolated(unsafe) let i = install
        locked { entries.append(Entry(loop: loop, drain: { d() }, install: { i($0) })); active += 1 }
    }

    func finished() { locked { active -= 1 } }

    var running: Int { locked { active } }

    /// Waits (start-up only) until `n` workers have registered, i.e. listen.
    func waitUntilRegistered(_ n: Int) {
        while locked({ entries.count }) < n { usleep(1000) }
    }

    private var all: [Entry] { locked { entries } }

    func drainAll() {
        for e in all { e.loop.execute(e.drain) }
    }

    /// Posts `g` to every worker and waits (main thread, up to 5 s) until each has installed
    /// it, so that once a reload is logged every new request runs on the new generation.
    /// Returns false when a worker did not answer in time (it installs it when it does).
    @discardableResult
    func installAll(_ g: SharedGeneration) -> Bool {
        let all = self.all
        let counter = Counter()
        for e in all {
            let install = e.install
            e.loop.execute { install(g); counter.value.add(1, ordering: .releasing) }
        }
        let deadline = MonotonicClock.now() &+ 5_000_000_000
        while counter.value.load(ordering: .acquiring) < all.count {
            if MonotonicClock.now() > deadline { return false }
            usleep(200)
        }
        return true
    }

    final class Counter: Sendable { let value = Atomic<Int>(0) }
}
