import CLinux
import PortcullisCore
import PortcullisEventLoop
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Provider host names → addresses, resolved off the event loops.
///
/// `getaddrinfo` blocks, so it runs only at start-up (before the loops run) and on a background
/// refresh thread. Event loops call `lookup`, which never blocks: an IP literal is parsed in
/// place, a name is read from the cache (a short mutex hold, no I/O).
public final class HostResolver: Sendable {
    private let cache = Mutex<[String: [SocketAddress]]>([:])
    private let counter = Atomic<Int>(0)

    public init() {}

    private static func key(_ host: String, _ port: UInt16) -> String { "\(host):\(port)" }

    /// Loop-safe. Rotates through the cached addresses so connections spread across them.
    public func lookup(host: String, port: UInt16) -> SocketAddress? {
        if let a = SocketAddress.numeric(host: host, port: port) { return a }
        let list = cache.withLock { $0[HostResolver.key(host, port)] }
        guard let list, !list.isEmpty else { return nil }
        let i = counter.wrappingAdd(1, ordering: .relaxed).oldValue
        return list[abs(i) % list.count]
    }

    /// Blocking resolution; call only from start-up code or the refresh thread.
    @discardableResult
    public func resolveBlocking(host: String, port: UInt16) -> [SocketAddress] {
        if let a = SocketAddress.numeric(host: host, port: port) { return [a] }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            Log.warning("cannot resolve provider host \(host): \(String(cString: gai_strerror(rc)))")
            return []
        }
        defer { freeaddrinfo(first) }
        var out: [SocketAddress] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if let sa = ai.pointee.ai_addr {
                var st = sockaddr_storage()
                withUnsafeMutableBytes(of: &st) { dst in
                    dst.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: Int(ai.pointee.ai_addrlen)))
                }
                out.append(SocketAddress(storage: st, length: ai.pointee.ai_addrlen))
            }
            p = ai.pointee.ai_next
        }
        // IPv4 first: loopback test servers and most providers answer there.
        out.sort { $0.family == AF_INET && $1.family != AF_INET }
        if !out.isEmpty { cache.withLock { $0[HostResolver.key(host, port)] = out } }
        return out
    }

    /// The names the refresh thread re-resolves (replaced whole by `track`).
    private let tracked = Mutex<[HostPort]>([])
    private let refreshing = Atomic<Bool>(false)

    /// Re-resolves `hosts` every `interval` seconds on a background thread (TTL-less DNS
    /// refresh, as nginx's `resolver valid=`). A reload calls it again with the new
    /// generation's hosts (resolve new names with `resolveBlocking` first, off the loops).
    public func track(hosts: [(String, UInt16)], intervalSeconds: UInt32 = 30) {
        let names = hosts.filter { SocketAddress.numeric(host: $0.0, port: $0.1) == nil }.map { HostPort(host: $0.0, port: $0.1) }
        tracked.withLock { $0 = names }
        guard !names.isEmpty, !refreshing.exchange(true, ordering: .relaxed) else { return }
        spawnThread(name: "portcullis-dns") { [self] in
            while true {
                sleep(intervalSeconds)
                for p in tracked.withLock({ $0 }) { resolveBlocking(host: p.host, port: p.port) }
            }
        }
    }
}

struct HostPort: Sendable { let host: String; let port: UInt16 }
