import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address, stored as `sockaddr_storage` so it can be handed to
/// bind/connect without further conversion. Value type; any thread.
public struct SocketAddress: Sendable, CustomStringConvertible, Hashable {
    public var storage: sockaddr_storage
    public var length: socklen_t

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool { a.description == b.description }
    public func hash(into h: inout Hasher) { h.combine(description) }

    public init(storage: sockaddr_storage, length: socklen_t) {
        self.storage = storage; self.length = length
    }

    /// Parses a numeric `host:port` (`127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:80`). No DNS.
    public static func parse(_ text: String) -> SocketAddress? {
        guard let (host, port) = splitHostPort(text) else { return nil }
        return numeric(host: host, port: port)
    }

    /// A numeric host and a port → address, or nil when `host` is not an IP literal.
    public static func numeric(host: String, port: UInt16) -> SocketAddress? {
        var st = sockaddr_storage()
        var a4 = in_addr()
        if inet_pton(AF_INET, host, &a4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = a4
            withUnsafeMutableBytes(of: &st) { dst in
                withUnsafeBytes(of: &sin) { dst.copyMemory(from: $0) }
            }
            return SocketAddress(storage: st, length: socklen_t(MemoryLayout<sockaddr_in>.size))
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, host, &a6) == 1 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_addr = a6
            withUnsafeMutableBytes(of: &st) { dst in
                withUnsafeBytes(of: &sin6) { dst.copyMemory(from: $0) }
            }
            return SocketAddress(storage: st, length: socklen_t(MemoryLayout<sockaddr_in6>.size))
        }
        return nil
    }

    /// Splits `host:port` / `[v6]:port`; nil when the port is missing or out of range.
    public static func splitHostPort(_ text: String) -> (String, UInt16)? {
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = UInt16(portText) else { return nil }
        return (String(host), port)
    }

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: UInt16 {
        var st = storage
        return withUnsafeBytes(of: &st) { raw in
            if family == AF_INET { return UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port) }
            return UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
        }
    }

    /// The IP as text, without the port.
    public var ipString: String {
        var st = storage
        var buf = [CChar](repeating: 0, count: 64)
        withUnsafeBytes(of: &st) { raw in
            if family == AF_INET {
                var a = raw.load(as: sockaddr_in.self).sin_addr
                _ = inet_ntop(AF_INET, &a, &buf, 64)
            } else {
                var a = raw.load(as: sockaddr_in6.self).sin6_addr
                _ = inet_ntop(AF_INET6, &a, &buf, 64)
            }
        }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String {
        family == AF_INET6 ? "[\(ipString)]:\(port)" : "\(ipString):\(port)"
    }

    /// Calls `body` with a `sockaddr` pointer for bind/connect.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        var st = storage
        return withUnsafePointer(to: &st) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }
}
