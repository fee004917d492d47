import CLinux
import PortcullisCore
#if canImport(Glibc)
import Glibc
#endif

/// The systemd notification protocol (`sd_notify(3)`), spoken without libsystemd: one unix
/// datagram of `KEY=value` lines per message to `$NOTIFY_SOCKET` (a path, or `@name` for the
/// abstract namespace). Absent socket → every call is a no-op (not under systemd, or
/// `Type=simple`). Used by the main thread only.
///
/// Messages sent: `READY=1` once every worker listens, `RELOADING=1` + `MONOTONIC_USEC=` then
/// `READY=1` around a reload, `STOPPING=1` on drain, `WATCHDOG=1` while every loop answers,
/// `STATUS=` with a one-line summary.
final class SystemdNotifier {
    private let fd: Int32
    private var address = sockaddr_un()
    private var addressLength: socklen_t = 0
    /// Half of `$WATCHDOG_USEC` (systemd's advice), in nanoseconds; nil without a watchdog.
    let watchdogIntervalNanos: UInt64?

    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (honouring `$WATCHDOG_PID`: the watchdog is
    /// ours only when it names this process or is absent).
    init(environment: [String: String]) {
        var interval: UInt64?
        if let u = environment["WATCHDOG_USEC"].flatMap({ UInt64($0) }), u > 0,
           environment["WATCHDOG_PID"].map({ $0 == String(getpid()) }) ?? true {
            interval = u * 1000 / 2
        }
        watchdogIntervalNanos = interval
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty,
              path.hasPrefix("/") || path.hasPrefix("@"), path.utf8.count < 108 else {
            fd = -1
            return
        }
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
            if bytes[0] == UInt8(ascii: "@") { p[0] = 0 }        // abstract namespace
        }
        addressLength = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes[0] == UInt8(ascii: "@") ? 0 : 1))
    }

    deinit { if fd >= 0 { Syscall.close(fd) } }

    var isActive: Bool { fd >= 0 }

    /// Sends `lines` as one datagram; failures are logged at debug level (systemd may be gone).
    func send(_ lines: String...) {
        guard fd >= 0 else { return }
        var message = lines.joined(separator: "\n")
        let rc = message.withUTF8 { text in
            withUnsafePointer(to: &address) { a in
                a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    sendto(fd, text.baseAddress, text.count, Int32(MSG_NOSIGNAL), sa, addressLength)
                }
            }
        }
        if rc < 0 { Log.debug("sd_notify: \(Syscall.errorString(pc_errno()))") }
    }

    /// `MONOTONIC_USEC=` for a `RELOADING=1` message (CLOCK_MONOTONIC, microseconds).
    static func monotonicMicros() -> UInt64 { MonotonicClock.now() / 1000 }
}
