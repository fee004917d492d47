import COpenSSL

/// base64url (RFC 4648 §5, no padding) on top of OpenSSL's base64 block codec.
public enum Base64URL {
    /// Decodes unpadded base64url; nil on any character outside the alphabet, a bad length, or a
    /// non-canonical encoding (unused trailing bits not zero, RFC 4648 §3.5): one byte string has
    /// exactly one accepted spelling, so a JWS signature cannot be re-spelled past a replay check.
    public static func decode<S: Sequence>(_ text: S) -> [UInt8]? where S.Element == UInt8 {
        var std: [UInt8] = []
        std.reserveCapacity(64)
        var last: UInt8 = 0
        for c in text {
            last = c
            switch c {
            case 45: std.append(43)        // - → +
            case 95: std.append(47)        // _ → /
            case 43, 47, 61: return nil    // + / = are not base64url (and JWS forbids padding)
            case 48...57, 65...90, 97...122: std.append(c)
            default: return nil
            }
        }
        // 2 chars carry 1 byte (4 unused bits), 3 chars carry 2 bytes (2 unused bits).
        switch std.count % 4 {
        case 2: if sextet(last) & 0x0F != 0 { return nil }
        case 3: if sextet(last) & 0x03 != 0 { return nil }
        default: break
        }
        return Base64.decodeStandardUnpadded(std)
    }

    /// The 6-bit value of a base64url character (already checked to be in the alphabet).
    static func sextet(_ c: UInt8) -> UInt8 {
        switch c {
        case 65...90: c - 65
        case 97...122: c - 71
        case 48...57: c + 4
        case 45: 62
        default: 63
        }
    }

    public static func decode(_ s: String) -> [UInt8]? { decode(s.utf8) }

    public static func encode(_ bytes: [UInt8]) -> String {
        var s = Base64.encodeStandard(bytes)
        while s.last == "=" { s.removeLast() }
        return String(s.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
    }
}

/// Standard base64 (webhook signatures) via EVP_EncodeBlock / EVP_DecodeBlock.
public enum Base64 {
    public static func decode(_ s: String) -> [UInt8]? {
        var chars = Array(s.utf8)
        var padding = 0
        while chars.last == 61 { chars.removeLast(); padding += 1 }
        guard padding <= 2, (chars.count + padding) % 4 == 0 else { return nil }
        for c in chars where !(c == 43 || c == 47 || (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c)) {
            return nil
        }
        return decodeStandardUnpadded(chars)
    }

    /// `chars` holds only standard-alphabet characters, without padding.
    static func decodeStandardUnpadded(_ chars: [UInt8]) -> [UInt8]? {
        let rem = chars.count % 4
        if rem == 1 { return nil }
        var padded = chars
        if rem != 0 { padded += [UInt8](repeating: 61, count: 4 - rem) }
        if padded.isEmpty { return [] }
        var out = [UInt8](repeating: 0, count: padded.count / 4 * 3)
        let n = padded.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                EVP_DecodeBlock(dst.baseAddress, src.baseAddress, Int32(src.count))
            }
        }
        guard n >= 0 else { return nil }
        let drop = rem == 0 ? 0 : 4 - rem
        return Array(out[0..<(Int(n) - drop)])
    }

    public static func encodeStandard(_ bytes: [UInt8]) -> String {
        if bytes.isEmpty { return "" }
        var out = [UInt8](repeating: 0, count: (bytes.count + 2) / 3 * 4 + 1)
        let n = bytes.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                EVP_EncodeBlock(dst.baseAddress, src.baseAddress, Int32(src.count))
            }
        }
        return String(decoding: out[0..<Int(n)], as: UTF8.self)
    }
}

enum Hex {
    static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }
}
