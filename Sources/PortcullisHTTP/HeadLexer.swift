#if canImport(Glibc)
import Glibc
#endif
import PortcullisCore

/// Byte-level helpers shared by the request and response head parsers. Pure functions over
/// raw buffers; no allocation except the Strings they return.
enum HeadLexer {
    static let CR: UInt8 = 13, LF: UInt8 = 10, SP: UInt8 = 32, HT: UInt8 = 9, COLON: UInt8 = 58

    /// RFC 9110 tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~". One load from a 128-byte literal
    /// ("1" marks a tchar): a `StaticString` is a pointer into the binary, no lazy global to
    /// check and nothing to retain.
    @inline(__always) static func isTchar(_ c: UInt8) -> Bool {
        c < 128 && tcharTable.utf8Start[Int(c)] == 0x31
    }
    @inline(__always) static var tcharTable: StaticString {
        "00000000000000000000000000000000010111110011011011111111110000000111111111111111111111111110001111111111111111111111111111101010"
    }

    /// Whether the `n` bytes at `p` (a header name), each with bit 0x20 set, equal the `n` bytes
    /// of `lowercase` (n ≥ 2), a word at a time. For a lowercase literal of letters and `-`:
    /// setting 0x20 folds `A`–`Z` onto `a`–`z` and leaves `-`, digits and letters as they are;
    /// the only other byte it folds onto one of those is CR (onto `-`), which is not a tchar —
    /// exact for tokens, and callers with unchecked bytes look for CR.
    @inline(__always) static func tokenEqualsLowercase(_ p: UnsafeRawPointer, _ lowercase: UnsafeRawPointer, _ n: Int) -> Bool {
        if n >= 8 {
            var i = 0
            while i + 8 < n {
                if (p + i).loadUnaligned(as: UInt64.self) | 0x2020_2020_2020_2020 != (lowercase + i).loadUnaligned(as: UInt64.self) {
                    return false
                }
                i += 8
            }
            let t = n - 8    // the last word, overlapping the one before when n is not a multiple of 8
            return (p + t).loadUnaligned(as: UInt64.self) | 0x2020_2020_2020_2020 == (lowercase + t).loadUnaligned(as: UInt64.self)
        }
        if n >= 4 {
            let t = n - 4
            return p.loadUnaligned(as: UInt32.self) | 0x2020_2020 == lowercase.loadUnaligned(as: UInt32.self)
                && (p + t).loadUnaligned(as: UInt32.self) | 0x2020_2020 == (lowercase + t).loadUnaligned(as: UInt32.self)
        }
        let t = n - 2
        return p.loadUnaligned(as: UInt16.self) | 0x2020 == lowercase.loadUnaligned(as: UInt16.self)
            && (p + t).loadUnaligned(as: UInt16.self) | 0x2020 == (lowercase + t).loadUnaligned(as: UInt16.self)
    }

    enum LineResult { case line(start: Int, end: Int, next: Int), incomplete, bareLF }

    /// Finds the next CRLF-terminated line starting at `from` (the LF found by `memchr`). A LF
    /// without CR is an error.
    @inline(__always)
    static func nextLine(_ b: UnsafeRawBufferPointer, from: Int) -> LineResult {
        guard from < b.count, let base = b.baseAddress, let hit = memchr(base + from, Int32(LF), b.count - from) else {
            return .incomplete
        }
        let i = UnsafeRawPointer(hit) - base
        if i == from || b[i - 1] != CR { return .bareLF }
        return .line(start: from, end: i - 1, next: i + 1)
    }

    @inline(__always) static func lower(_ c: UInt8) -> UInt8 {
        (c >= 65 && c <= 90) ? c | 0x20 : c
    }

    /// Folds the ASCII letters of `count` bytes at `p` to lower case in place, eight bytes at
    /// a time (other bytes, those ≥ 0x80 included, are left as they are). Per byte of a word,
    /// over its low seven bits `h`: `h + 0x3F` reaches bit 7 when `h ≥ 'A'`, `h + 0x25` when
    /// `h > 'Z'` (no carry leaves a byte: `h ≤ 0x7F`); an upper-case letter, without bit 7 of its
    /// own, gets 0x20 from its mask bit shifted down two places.
    /// Folding is idempotent, so the last word of a name of 8 bytes or more overlaps the one
    /// before it, and a name of 4–7 bytes is one word made of two overlapping halves.
    static func lowercase(_ p: UnsafeMutablePointer<UInt8>, count: Int) {
        let raw = UnsafeMutableRawPointer(p)
        @inline(__always) func folded(_ x: UInt64) -> UInt64 {
            let h = x & 0x7F7F_7F7F_7F7F_7F7F
            let upper = (h &+ 0x3F3F_3F3F_3F3F_3F3F) & ~(h &+ 0x2525_2525_2525_2525) & ~x & 0x8080_8080_8080_8080
            return x | (upper >> 2)
        }
        if count >= 8 {
            var i = 0
            while i + 8 < count {
                (raw + i).storeBytes(of: folded((raw + i).loadUnaligned(as: UInt64.self)), as: UInt64.self)
                i &+= 8
            }
            let t = count - 8
            (raw + t).storeBytes(of: folded((raw + t).loadUnaligned(as: UInt64.self)), as: UInt64.self)
        } else if count >= 4 {
            let t = count - 4
            let x = folded(UInt64((raw + t).loadUnaligned(as: UInt32.self)) << 32 | UInt64(raw.loadUnaligned(as: UInt32.self)))
            raw.storeBytes(of: UInt32(truncatingIfNeeded: x), as: UInt32.self)
            (raw + t).storeBytes(of: UInt32(truncatingIfNeeded: x >> 32), as: UInt32.self)
        } else {
            var i = 0
            while i < count { p[i] = lower(p[i]); i &+= 1 }
        }
    }

    /// The bytes at `[i, i + n)`, 4 ≤ n ≤ 8, as one word: the first four in the low half, the
    /// last four in the high half (overlapping when n < 8). For checks that hold of every byte,
    /// where a byte seen twice changes nothing.
    @inline(__always) static func shortWord(_ p: UnsafeRawPointer, _ i: Int, _ n: Int) -> UInt64 {
        UInt64((p + i + n - 4).loadUnaligned(as: UInt32.self)) << 32 | UInt64((p + i).loadUnaligned(as: UInt32.self))
    }

    /// Whether each byte of `w` is an ASCII letter, digit or `-`: the bytes of nearly every
    /// header name, all of them tchars. Over a byte's low seven bits `x`, `x` is in `[lo, hi]`
    /// when bit 7 of `(x + 0x80 − lo) & ~(x + 0x7F − hi)` is set (no sum leaves its byte); a
    /// letter is `x | 0x20` in `a`–`z`. A byte with bit 7 of its own is not one.
    @inline(__always) static func isNameWord(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, high: UInt64 = 0x8080_8080_8080_8080
        let x = w & ~high, l = x | 0x2020_2020_2020_2020
        let letter = (l &+ ones &* (0x80 - 0x61)) & ~(l &+ ones &* (0x7F - 0x7A))
        let digit = (x &+ ones &* (0x80 - 0x30)) & ~(x &+ ones &* (0x7F - 0x39))
        let dash = (x &+ ones &* (0x80 - 0x2D)) & ~(x &+ ones &* (0x7F - 0x2D))
        return (letter | digit | dash) & ~w & high == high
    }

    /// Whether the `n ≥ 4` bytes at `p + i` are all letters, digits or `-` (`isNameWord`), a
    /// word at a time, the last word overlapping the one before.
    @inline(__always) static func isPlainName(_ p: UnsafeRawPointer, _ i: Int, _ n: Int) -> Bool {
        if n < 8 { return isNameWord(shortWord(p, i, n)) }
        var j = i
        while j + 8 < i + n {
            if !isNameWord((p + j).loadUnaligned(as: UInt64.self)) { return false }
            j += 8
        }
        return isNameWord((p + i + n - 8).loadUnaligned(as: UInt64.self))
    }

    /// Whether no byte of `w` is below 0x20 or is 0x7F (bytes ≥ 0x80 pass, as obs-text). Exact
    /// when it answers true; a word with a tab (or a borrow's false mark) answers false and the
    /// caller checks it byte by byte.
    @inline(__always) static func isPlainValueWord(_ w: UInt64) -> Bool {
        let control = (w &- 0x2020_2020_2020_2020) & ~w & 0x8080_8080_8080_8080
        let d = w ^ 0x7F7F_7F7F_7F7F_7F7F
        let del = (d &- 0x0101_0101_0101_0101) & ~d & 0x8080_8080_8080_8080
        return control | del == 0
    }

    /// Whether the bytes of `b` from `start`, ASCII letters folded to lower case, begin with
    /// `lowercase` (the caller checks that `b` holds that many).
    @inline(__always) static func matchesLowercase(_ b: UnsafeRawBufferPointer, from start: Int,
                                                   _ lowercase: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < lowercase.count {
            if lower(b[start + i]) != lowercase[i] { return false }
            i += 1
        }
        return true
    }

    static func string(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: b[s..<e]), as: UTF8.self)
    }

    /// The method token at `[s, e)`: a literal for the common methods (no String to build or
    /// validate), else a new String. Methods are case-sensitive (RFC 9110 §9.1).
    static func method(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int) -> String {
        guard b.baseAddress != nil else { return "" }
        if isLiteral(b, s, e, "POST") { return "POST" }
        if isLiteral(b, s, e, "GET") { return "GET" }
        if isLiteral(b, s, e, "HEAD") { return "HEAD" }
        if isLiteral(b, s, e, "OPTIONS") { return "OPTIONS" }
        if isLiteral(b, s, e, "PUT") { return "PUT" }
        if isLiteral(b, s, e, "DELETE") { return "DELETE" }
        if isLiteral(b, s, e, "PATCH") { return "PATCH" }
        return string(b, s, e)
    }

    /// Whether the bytes at `[s, e)` are `literal`'s: a length check and one `memcmp`, no String.
    @inline(__always)
    static func isLiteral(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int, _ literal: StaticString) -> Bool {
        guard let p = b.baseAddress else { return false }
        return e - s == literal.utf8CodeUnitCount && memcmp(p + s, literal.utf8Start, e - s) == 0
    }

    enum HeaderError { case whitespaceBeforeColon, obsFold, badName, badValue, noColon }

    /// Validates one header line `[s, e)` (RFC 9112 §5: token name, colon with no whitespace
    /// before it, no obs-fold, no control characters in the value) and returns offsets relative
    /// to `base`, classified by name. No Strings: response heads are forwarded from these offsets.
    @inline(__always)
    static func field(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int, base: Int) -> Result<HeaderField, HeaderErrorBox> {
        if b[s] == SP || b[s] == HT { return .failure(.init(.obsFold)) }
        var i = s
        var known = KnownHeader.other
        // A known name (most lines) is recognised up to the first colon without a byte-by-byte
        // tchar check: its letters and `-` compare a word at a time with 0x20 set, which folds no
        // other byte onto a letter, and onto `-` only CR (looked for). Another name of 4 bytes or
        // more made of letters, digits and `-` only (nearly every one) is checked a word at a
        // time (`isPlainName`); any other is checked byte by byte against RFC 9110's token grammar.
        if let base = b.baseAddress {
            let c = colonBeforeCR(base, s, e)
            if c > s {
                known = KnownHeader.classifyToken(UnsafeRawBufferPointer(rebasing: b[s..<c]))
                if (known != .other && known != .proxyOther) || (c - s >= 4 && isPlainName(base, s, c - s)) { i = c }
            }
        }
        if i == s {
            while i < e && isTchar(b[i]) { i += 1 }
            if i == e { return .failure(.init(.noColon)) }
            if b[i] != COLON { return .failure(.init(b[i] == SP || b[i] == HT ? .whitespaceBeforeColon : .badName)) }
            if i == s { return .failure(.init(.badName)) }
        }
        var vs = i + 1
        var ve = e
        while vs < ve && (b[vs] == SP || b[vs] == HT) { vs += 1 }
        while ve > vs && (b[ve - 1] == SP || b[ve - 1] == HT) { ve -= 1 }
        var j = vs
        if let p = b.baseAddress {
            // Sixteen bytes at a time (vector compares), then eight, while none is below 0x20 or
            // is 0x7F (bytes ≥ 0x80 pass, as obs-text); a block with one of them (a tab, or an
            // error) goes to the byte loop.
            let low = SIMD16<UInt8>(repeating: 0x20), del = SIMD16<UInt8>(repeating: 0x7F)
            while j + 16 <= ve {
                let v = (p + j).loadUnaligned(as: SIMD16<UInt8>.self)
                if any((v .< low) .| (v .== del)) { break }
                j += 16
            }
            while j + 8 <= ve {
                if !isPlainValueWord((p + j).loadUnaligned(as: UInt64.self)) { break }
                j += 8
            }
            // When the loops ran out, not into a word to look at byte by byte: the rest, 1–7
            // bytes, as one word of the value's last 8 (overlapping bytes checked already), or
            // of two overlapping halves for a value of 4–7 bytes.
            if j < ve && ve - j < 8 {
                if ve - vs >= 8 {
                    if isPlainValueWord((p + ve - 8).loadUnaligned(as: UInt64.self)) { j = ve }
                } else if ve - j >= 4 {
                    if isPlainValueWord(shortWord(p, j, ve - j)) { j = ve }
                }
            }
        }
        while j < ve {
            let c = b[j]
            if (c < 0x20 && c != HT) || c == 0x7F { return .failure(.init(.badValue)) }
            j += 1
        }
        // Offsets from `base`, all at most `e - base`: one range check for the four.
        precondition(e - base <= Int(Int32.max), "header section beyond 2 GiB")
        return .success(HeaderField(nameStart: Int32(truncatingIfNeeded: s - base), nameEnd: Int32(truncatingIfNeeded: i - base),
                                    valueStart: Int32(truncatingIfNeeded: vs - base), valueEnd: Int32(truncatingIfNeeded: ve - base),
                                    known: known))
    }

    /// The first colon in `[s, e)` if no CR comes before it, else -1 (`ByteWord`, eight bytes a
    /// word: a header name is a word or three).
    @inline(__always) static func colonBeforeCR(_ base: UnsafeRawPointer, _ s: Int, _ e: Int) -> Int {
        let j = ByteWord.firstIndex(of: COLON, or: CR, in: base, from: s, to: e)
        return j < e && base.load(fromByteOffset: j, as: UInt8.self) == COLON ? j : -1
    }

    struct HeaderErrorBox: Error { let kind: HeaderError; init(_ k: HeaderError) { kind = k } }

    static func describe(_ e: HeaderError) -> String {
        switch e {
        case .whitespaceBeforeColon: "whitespace between header name and colon"
        case .obsFold: "obsolete line folding in header section"
        case .badName: "invalid header field name"
        case .badValue: "invalid character (NUL, CR, LF or control) in header value"
        case .noColon: "header line without a colon"
        }
    }
}
