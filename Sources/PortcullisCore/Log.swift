import CLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Severity of a log line.
public enum LogLevel: Int, Sendable, Comparable {
    case debug = 0, info, warning, error
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
    public init?(name: String) {
        switch name {
        case "debug": self = .debug
        case "info": self = .info
        case "warn", "warning": self = .warning
        case "error": self = .error
        default: return nil
        }
    }
    var label: String {
        switch self { case .debug: "debug"; case .info: "info"; case .warning: "warn"; case .error: "error" }
    }
}

/// Process-wide logger: one `write(2)` per line to stderr, so lines from different worker threads
/// never interleave. Never give it secrets, tokens or request bodies (field-notes #8).
public enum Log {
    private static let minimum = Atomic<Int>(LogLevel.info.rawValue)

    public static func setLevel(_ l: LogLevel) { minimum.store(l.rawValue, ordering: .relaxed) }
    public static func enabled(_ l: LogLevel) -> Bool { l.rawValue >= minimum.load(ordering: .relaxed) }

    public static func debug(_ m: @autoclosure () -> String) { emit(.debug, m) }
    public static func info(_ m: @autoclosure () -> String) { emit(.info, m) }
    public static func warning(_ m: @autoclosure () -> String) { emit(.warning, m) }
    public static func error(_ m: @autoclosure () -> String) { emit(.error, m) }

    private static func emit(_ level: LogLevel, _ m: () -> String) {
        guard enabled(level) else { return }
        var line = "portcullis \(level.label): \(m())\n"
        line.withUTF8 { writeAll(2, $0.baseAddress, $0.count) }
    }
}
