import PortcullisCore

/// The canonical form of an origin-form request target (RFC 3986 §5.2.4 dot-segment removal),
/// computed once so that routing, authentication and the upstream all see the same path.
///
/// Refused (each a 400), because a proxy and the service behind it may read them differently:
/// a fragment (`#`), a backslash, percent-encoded separators and dots (`%2f`, `%5c`, `%2e`, any
/// case) and `%00`, malformed percent-encoding, and a path whose `..` segments climb above the
/// root. Empty segments (`//`) are merged, as nginx does. The query is kept byte for byte.
/// With these rules a canonical path never contains `.`/`..` segments, so a route prefix
/// (`/v1/*`) and a provider's base path cannot be escaped.
public enum RequestTarget {
    public struct Canonical: Equatable, Sendable {
        /// The path, starting with `/`, with no dot segments and no empty segments.
        public let path: String
        /// `path` followed by the query (with its `?`) if the request had one.
        public let target: String
    }

    public enum Refusal: Error, Equatable, Sendable {
        case fragment, backslash, encodedSeparator, malformedPercentEncoding, aboveRoot, notOriginForm

        public var message: String {
            switch self {
            case .fragment: "A request target must not contain a fragment ('#')."
            case .backslash: "A request path must not contain a backslash."
            case .encodedSeparator: "A request path must not contain encoded '/', '\\\\', '.' or NUL (%2F, %5C, %2E, %00)."
            case .malformedPercentEncoding: "Malformed percent-encoding in the request path."
            case .aboveRoot: "The request path climbs above the root."
            case .notOriginForm: "The request target must be an absolute path."
            }
        }
    }

    public static func canonicalize(_ target: String) -> Result<Canonical, Refusal> {
        return target.withUTF8Bytes { b -> Result<Canonical, Refusal> in
            let n = b.count
            guard n > 0, b[0] == UInt8(ascii: "/") else { return .failure(.notOriginForm) }
            var q = n
            var needsRewrite = false
            var i = 0
            while i < n {
                let c = b[i]
                if c == UInt8(ascii: "#") { return .failure(.fragment) }
                if c == UInt8(ascii: "?") && q == n { q = i }
                if q == n {
                    switch c {
                    case UInt8(ascii: "\\"): return .failure(.backslash)
                    case UInt8(ascii: "%"):
                        guard i + 2 < n, let hi = hex(b[i + 1]), let lo = hex(b[i + 2]) else {
                            return .failure(.malformedPercentEncoding)
                        }
                        let v = hi << 4 | lo
                        if v == 0x2F || v == 0x5C || v == 0x2E || v == 0 { return .failure(.encodedSeparator) }
                        i += 2
                    case UInt8(ascii: "/"):
                        // "//", "/." start a segment that needs work.
                        if i + 1 < q && (b[i + 1] == UInt8(ascii: "/") || b[i + 1] == UInt8(ascii: ".")) { needsRewrite = true }
                    default: break
                    }
                }
                i += 1
            }
            if !needsRewrite {
                let path = q == n ? target : String(decoding: UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(b)[0..<q]), as: UTF8.self)
                return .success(Canonical(path: path, target: target))
            }
            // Split into segments, drop "" and ".", pop on "..".
            var segments: [Range<Int>] = []
            var start = 1
            var trailingSlash = false
            while start <= q {
                var end = start
                while end < q && b[end] != UInt8(ascii: "/") { end += 1 }
                let len = end - start
                let isLast = end >= q
                if len == 0 {
                    if isLast { trailingSlash = true }
                } else if len == 1 && b[start] == UInt8(ascii: ".") {
                    if isLast { trailingSlash = true }
                } else if len == 2 && b[start] == UInt8(ascii: ".") && b[start + 1] == UInt8(ascii: ".") {
                    if segments.isEmpty { return .failure(.aboveRoot) }
                    segments.removeLast()
                    if isLast { trailingSlash = true }
                } else {
                    segments.append(start..<end)
                    if isLast { trailingSlash = false }
                }
                start = end + 1
            }
            var out: [UInt8] = []
            out.reserveCapacity(n)
            for s in segments { out.append(UInt8(ascii: "/")); out.append(bytes: UnsafeRawBufferPointer(rebasing: b[s])) }
            if out.isEmpty || trailingSlash { out.append(UInt8(ascii: "/")) }
            let path = String(decoding: out, as: UTF8.self)
            if q < n { out.append(bytes: UnsafeRawBufferPointer(rebasing: b[q..<n])) }
            return .success(Canonical(path: path, target: String(decoding: out, as: UTF8.self)))
        }
    }

    @inline(__always) static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 65...70: c - 55
        case 97...102: c - 87
        default: nil
        }
    }
}
