#if canImport(Glibc)
import Glibc
#endif

extension StringProtocol {
    /// Without leading and trailing optional whitespace (RFC 9110 OWS: spaces and tabs).
    public func trimmingOWS() -> Substring {
        var s = self[...]
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return Substring(s)
    }

    /// The lowercased, OWS-trimmed items of a comma-separated header value (`Connection: a, B`).
    public func lowercasedCommaList() -> [String] {
        lowercased().split(separator: ",").map { String($0.trimmingOWS()) }
    }
}

/// Whole-file reads for start-up and reload code (config, keys). Never on the request path.
public enum FileReader {
    /// The file's bytes, or nil when it cannot be opened or exceeds `limit` bytes.
    public static func bytes(_ path: String, limit: Int = 16 << 20) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n > 0 { out += buf[0..<n] }
            if out.count > limit { return nil }
            if n < buf.count { break }
        }
        return out
    }
}

/// Writes all of a buffer to an fd, retrying short writes and EINTR (logs only).
public func writeAll(_ fd: Int32, _ p: UnsafeRawPointer?, _ count: Int) {
    guard let p else { return }
    var off = 0
    while off < count {
        let r = write(fd, p + off, count - off)
        if r <= 0 {
            if errno == EINTR { continue }
            return
        }
        off += r
    }
}
