import PortcullisCore

/// Byte-level helpers shared by the request and response head parsers. Pure functions over
/// raw buffers; no allocation except the Strings they return.
enum HeadLexer {
    static let CR: UInt8 = 13, LF: UInt8 = 10, SP: UInt8 = 32, HT: UInt8 = 9, COLON: UInt8 = 58

    /// RFC 9110 tchar: ALPHA / DIGIT / "!#$%&'*+-.^_`|~". A bit test, no table to load.
    @inline(__always) static func isTchar(_ c: UInt8) -> Bool {
        // Bits for 0x20...0x7F: 0x21 ! 0x23-0x27 #$%&' 0x2A * 0x2B + 0x2D - 0x2E . 0x30-0x39
        // 0x41-0x5A 0x5E ^ 0x5F _ 0x60 ` 0x61-0x7A 0x7C | 0x7E ~
        let lo: UInt64 = 0x03FF_6CFA_0000_0000   // 0x00-0x3F
        let hi: UInt64 = 0x57FF_FFFF_C7FF_FFFE   // 0x40-0x7F
        if c < 64 { return (lo >> UInt64(c)) & 1 == 1 }
        if c < 128 { return (hi >> UInt64(c - 64)) & 1 == 1 }
        return false
    }

    enum LineResult { case line(start: Int, end: Int, next: Int), incomplete, bareLF }

    /// Finds the next CRLF-terminated line starting at `from`. A LF without CR is an error.
    @inline(__always)
    static func nextLine(_ b: UnsafeRawBufferPointer, from: Int) -> LineResult {
        var i = from
        let n = b.count
        while i < n {
            if b[i] == LF {
                if i == from || b[i - 1] != CR { return .bareLF }
                return .line(start: from, end: i - 1, next: i + 1)
            }
            i += 1
        }
        return .incomplete
    }

    @inline(__always) static func lower(_ c: UInt8) -> UInt8 {
        (c >= 65 && c <= 90) ? c | 0x20 : c
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

    enum HeaderError { case whitespaceBeforeColon, obsFold, badName, badValue, noColon }

    /// Validates one header line `[s, e)` (RFC 9112 §5: token name, colon with no whitespace
    /// before it, no obs-fold, no control characters in the value) and returns offsets relative
    /// to `base`, classified by name. No Strings: response heads are forwarded from these offsets.
    static func field(_ b: UnsafeRawBufferPointer, _ s: Int, _ e: Int, base: Int) -> Result<HeaderField, HeaderErrorBox> {
        if b[s] == SP || b[s] == HT { return .failure(.init(.obsFold)) }
        var i = s
        while i < e && isTchar(b[i]) { i += 1 }
        if i == e { return .failure(.init(.noColon)) }
        if b[i] != COLON { return .failure(.init(b[i] == SP || b[i] == HT ? .whitespaceBeforeColon : .badName)) }
        if i == s { return .failure(.init(.badName)) }
        let known = KnownHeader.classifyIgnoringCase(UnsafeRawBufferPointer(rebasing: b[s..<i]))
        var vs = i + 1
        var ve = e
        while vs < ve && (b[vs] == SP || b[vs] == HT) { vs += 1 }
        while ve > vs && (b[ve - 1] == SP || b[ve - 1] == HT) { ve -= 1 }
        var j = vs
        if let p = b.baseAddress {
            // Eight bytes at a time while none is below 0x20 or is 0x7F (bytes ≥ 0x80 pass, as
            // obs-text); a word with one of them (a tab, or an error) goes to the byte loop.
            while j + 8 <= ve {
                let w = (p + j).loadUnaligned(as: UInt64.self)
                let control = (w &- 0x2020_2020_2020_2020) & ~w & 0x8080_8080_8080_8080
                let d = w ^ 0x7F7F_7F7F_7F7F_7F7F
                let del = (d &- 0x0101_0101_0101_0101) & ~d & 0x8080_8080_8080_8080
                if control | del != 0 { break }
                j += 8
            }
        }
        while j < ve {
            let c = b[j]
            if (c < 0x20 && c != HT) || c == 0x7F { return .failure(.init(.badValue)) }
            j += 1
        }
        return .success(HeaderField(nameStart: Int32(s - base), nameEnd: Int32(i - base), valueStart: Int32(vs - base),
                                    valueEnd: Int32(ve - base), known: known))
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
