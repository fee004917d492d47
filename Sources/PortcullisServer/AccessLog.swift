import CLinux
import PortcullisCore
import PortcullisEventLoop
import PortcullisConfig
import PortcullisJSON
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One access-log line per request, `log.format: json` (default) or `text`. Carries identities,
/// routing, status, the outcome enum, sizes, token counts and timings: never tokens, keys,
/// bodies or query strings.
enum AccessLogFormat {
    static func line(_ r: RequestSummary, format: LogConfiguration.Format, nowMillis: UInt64) -> String {
        let ttfb = r.ttfbNanos.map { Self.millis($0) }
        let fields: [(String, Value)] = [
            ("time", .string(Self.isoTime(nowMillis))), ("request_id", .string(r.requestID)), ("client", .string(r.client)),
            ("method", .string(r.method)), ("path", .string(r.path)), ("route", .optional(r.route?.path)),
            ("tenant", .optional(r.tenant)), ("user", .optional(r.user)), ("alias", .optional(r.alias)),
            ("provider", .optional(r.provider)), ("model", .optional(r.model)), ("status", .number(String(r.status))),
            ("outcome", .string(r.outcome.rawValue)), ("detail", .optional(r.detail.isEmpty ? nil : r.detail)),
            ("bytes", .number(String(r.bytes))),
            ("prompt_tokens", r.promptTokens.map { .number(String($0)) } ?? .null),
            ("completion_tokens", r.completionTokens.map { .number(String($0)) } ?? .null),
            ("ttfb_ms", ttfb.map { .number($0) } ?? .null), ("duration_ms", .number(Self.millis(r.durationNanos))),
            ("attempts", .number(String(r.attempts.count))),
        ]
        var out = ""
        out.reserveCapacity(384)
        switch format {
        case .json:
            out += "{"
            for (i, (k, v)) in fields.enumerated() {
                if i > 0 { out += "," }
                out += "\"\(k)\":"
                switch v {
                case .string(let s): out += JSONWriter.quoted(s)
                case .optional(let s): out += s.map(JSONWriter.quoted) ?? "null"
                case .number(let n): out += n
                case .null: out += "null"
                }
            }
            out += "}\n"
        case .text:
            for (i, (k, v)) in fields.enumerated() {
                if i > 0 { out += " " }
                out += k + "="
                switch v {
                case .string(let s): out += Self.textValue(s)
                case .optional(let s): out += s.map(Self.textValue) ?? "-"
                case .number(let n): out += n
                case .null: out += "-"
                }
            }
            out += "\n"
        }
        return out
    }

    enum Value { case string(String), optional(String?), number(String), null }

    /// A text-format value: as is when it is a plain token, JSON-quoted otherwise.
    static func textValue(_ s: String) -> String {
        if s.isEmpty { return "\"\"" }
        return s.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) ? s : JSONWriter.quoted(s)
    }

    /// Milliseconds with microsecond precision ("0.412").
    static func millis(_ nanos: UInt64) -> String {
        let us = nanos / 1000
        let frac = us % 1000
        return "\(us / 1000)." + (frac < 10 ? "00" : frac < 100 ? "0" : "") + String(frac)
    }

    /// RFC 3339 UTC with milliseconds.
    static func isoTime(_ ms: UInt64) -> String {
        var t = time_t(ms / 1000)
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let milli = ms % 1000
        let m = milli < 10 ? "00\(milli)" : milli < 100 ? "0\(milli)" : "\(milli)"
        return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)).\(m)Z"
    }
}

/// Hands access-log bytes from the workers to stdout without ever blocking a worker: workers
/// append to a bounded buffer (one short lock per loop iteration); a writer thread of its own
/// does the blocking `write(2)`s. When stdout stalls (a full pipe, a stuck journald) and the
/// buffer holds `capacity` bytes, further lines are dropped and counted
/// (`portcullis_access_log_dropped_total`) until it drains.
///
/// The writer sleeps in a blocking read of an eventfd while there is nothing to write (an idle
/// process wakes for nothing); a worker that appends to an empty buffer signals it, one
/// non-blocking `write(2)` to the eventfd (a counter: a signal sent before the writer blocks
/// is not lost).
final class AccessLogWriter: Sendable {
    private let pending = Mutex<[UInt8]>([])
    private let writing = Atomic<Bool>(false)
    let capacity = Atomic<Int>(1 << 20)
    private let fd: Int32
    /// Work is queued (-1: none could be made; the writer then polls).
    private let wake: Int32

    init(fd: Int32 = 1, capacity: Int) {
        self.fd = fd
        self.capacity.store(capacity, ordering: .relaxed)
        wake = eventfd(0, Int32(EFD_CLOEXEC))
        spawnThread(name: "portcullis-log") { [self] in
            while true {
                if writeOnce() { continue }
                if wake >= 0 {
                    var n: UInt64 = 0
                    _ = read(wake, &n, 8)                   // until a worker queues something
                } else {
                    usleep(20_000)
                }
            }
        }
    }

    /// Queues `bytes` (whole lines); false when they do not fit (dropped).
    func enqueue(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let cap = capacity.load(ordering: .relaxed)
        let (fits, wasEmpty) = pending.withLock { p -> (Bool, Bool) in
            guard p.count + bytes.count <= cap else { return (false, false) }
            let empty = p.isEmpty
            p.append(bytes: bytes)
            return (true, empty)
        }
        if wasEmpty && wake >= 0 {
            var one: UInt64 = 1
            _ = write(wake, &one, 8)
        }
        return fits
    }

    /// Writes what is queued; false when there was nothing. (The writer thread, and the main
    /// thread once more at exit.)
    @discardableResult
    func writeOnce() -> Bool {
        writing.store(true, ordering: .sequentiallyConsistent)
        defer { writing.store(false, ordering: .sequentiallyConsistent) }
        let chunk = pending.withLock { p -> [UInt8] in
            let c = p
            p.removeAll(keepingCapacity: true)
            return c
        }
        guard !chunk.isEmpty else { return false }
        chunk.withUnsafeBytes { writeAll(fd, $0.baseAddress, $0.count) }
        return true
    }

    /// At exit (main thread): waits up to a second for the writer thread to write what is queued.
    func flush() {
        let deadline = MonotonicClock.now() &+ 1_000_000_000
        while MonotonicClock.now() < deadline
                && (pending.withLock({ !$0.isEmpty }) || writing.load(ordering: .sequentiallyConsistent)) {
            usleep(1000)
        }
    }
}
