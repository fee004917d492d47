#if arch(x86_64)
// Clang's SSE2 intrinsics, from the compiler's own headers (no library is linked): SSE2 is part
// of the x86-64 baseline, so every machine this binary runs on has it.
import _Builtin_intrinsics.intel
#endif

/// Passing over the values nested below a top-level member (a body's `messages`, `tools`,
/// `response_format`): most of a large request, of which the lenient scan needs only where it
/// ends. Two implementations with one contract, `skipNestedBytes` (byte by byte: every
/// architecture, and the reference the tests hold the other to) and, on x86-64,
/// `skipNestedBlocks` (64 bytes at a time with SSE2 compares).
///
/// The contract: `start` is inside a nested value at `depth` ≥ 2, not inside a string. Only
/// strings (`"` … `"`, where a backslash takes the next byte with it) and brackets are looked
/// at; bracket kinds are not matched against each other (the lenient scan leaves malformed
/// JSON to the strict reader or the provider). The answer is the index of the bracket that
/// closes the depth-2 value — the byte that takes the depth back to 1, which the caller still
/// has to consume — with `depth` left at 2; or -1 when the text ends first (inside a string
/// too), with `depth` as it was.
extension JSONReader {
    @inline(__always)
    static func skipNested(_ bytes: UnsafePointer<UInt8>, _ n: Int, _ start: Int, _ depth: inout Int) -> Int {
        #if arch(x86_64)
        return skipNestedBlocks(bytes, n, start, &depth)
        #else
        return skipNestedBytes(bytes, n, start, &depth)
        #endif
    }

    /// One bracket outside a string: an opening one goes a level deeper, a closing one comes
    /// back up; true for the one that closes the depth-2 value (`d` is then left at 2 and the
    /// caller stops there).
    @inline(__always)
    static func closesValue(open: Bool, _ d: inout Int) -> Bool {
        if open { d &+= 1; return false }
        if d > 2 { d &-= 1; return false }
        return true
    }

    /// The byte-by-byte form: one table load passes over each byte that is neither a quote nor
    /// a bracket; strings end through `stringEnd` (a word at a time, then `memchr`).
    static func skipNestedBytes(_ bytes: UnsafePointer<UInt8>, _ n: Int, _ start: Int, _ depth: inout Int) -> Int {
        var i = start
        var d = depth
        while i < n {
            var c = scanClass(bytes[i])
            while c != ScanClass.quote && c < ScanClass.open {
                i &+= 1
                if i >= n { return -1 }
                c = scanClass(bytes[i])
            }
            if c == ScanClass.quote {
                i = stringEnd(bytes, n, i)
                if i < 0 { return -1 }
            } else if closesValue(open: c == ScanClass.open, &d) {
                depth = d
                return i
            } else {
                i &+= 1
            }
        }
        return -1
    }

    #if arch(x86_64)
    /// The block form. Each 64-byte block is classified once, into four bit masks (bit k: byte
    /// k of the block): quotes, backslashes, opening and closing brackets (`BlockMasks`).
    ///
    /// - A block is taken whole, without a branch per byte or per string: the escaped quotes
    ///   are dropped (odd runs of backslashes), the bytes inside strings are the prefix XOR of
    ///   the other quote bits (flipped when the block begins inside a string), the brackets
    ///   outside them are counted, and only a block whose closing brackets could take the depth
    ///   back to 1 is walked bracket by bracket to find the one that does.
    /// - Long strings are left to `stringEnd` (`memchr`): a block that begins inside a string
    ///   and has no quote is the middle of one, and a block that ends inside a string opened in
    ///   its first half has a string of 32 bytes or more open (shorter ones, the many of a
    ///   tools-heavy body, are cheaper to finish in the next block).
    /// - A block with a backslash outside a string (not JSON) is walked event by event (the next
    ///   quote or backslash inside a string, the next quote or bracket outside one), so it reads
    ///   exactly as `skipNestedBytes` reads it.
    ///
    /// The last, partial block is copied into a zeroed stack block first (a NUL byte matches
    /// nothing), so no load reads past `n`.
    static func skipNestedBlocks(_ bytes: UnsafePointer<UInt8>, _ n: Int, _ start: Int, _ depth: inout Int) -> Int {
        var i = start
        var d = depth
        var inString = false
        while i < n {
            let m = n &- i >= 64 ? BlockMasks(UnsafeRawPointer(bytes + i)) : BlockMasks(tail: bytes + i, count: n &- i)
            if inString && m.quote == 0 {                   // the middle of a long string
                let e = stringEnd(bytes, n, i &- 1)             // `i - 1`: the scan is inside a string there
                if e < 0 { return -1 }
                inString = false
                i = e
                continue
            }
            // The quotes that delimit strings: a quote escaped by a backslash does not. Within a
            // run of backslashes each escapes the next, so the byte after a run is escaped when
            // the run's length is odd (simdjson's odd-run arithmetic; the run starts fresh at
            // the block's first byte, which is never an escaped one).
            var quotes = m.quote
            var escapeCarry = false                             // byte 63 escapes the next block's first
            if m.backslash != 0 {
                let b = m.backslash, odd: UInt64 = 0xAAAA_AAAA_AAAA_AAAA
                let code = (((b &<< 1) | odd) &- b) ^ odd       // the escaped bytes, plus each run's escapes
                quotes &= ~(code ^ b)
                escapeCarry = (code & b) &>> 63 != 0
            }
            var q = quotes                                      // prefix XOR: bit k set when an odd number
            q ^= q &<< 1; q ^= q &<< 2; q ^= q &<< 4            // of quotes are at or before byte k
            q ^= q &<< 8; q ^= q &<< 16; q ^= q &<< 32
            let strings = inString ? ~q : q
            // A backslash outside a string is not JSON; the walk below reads it as the byte form does.
            if m.backslash & ~strings == 0 {
                let opens = m.open & ~strings, closes = m.close & ~strings
                if d &- closes.nonzeroBitCount >= 2 {
                    d = d &+ opens.nonzeroBitCount &- closes.nonzeroBitCount
                } else {
                    var brackets = opens | closes
                    while brackets != 0 {
                        let k = brackets.trailingZeroBitCount
                        if closesValue(open: (opens &>> k) & 1 != 0, &d) {
                            depth = d
                            return i &+ k
                        }
                        brackets &= brackets &- 1
                    }
                }
                if strings &>> 63 != 0 && quotes != 0 && quotes.leadingZeroBitCount >= 32 {
                    // A string of 32 bytes or more is open at the block's end: `stringEnd` ends it from its quote.
                    let e = stringEnd(bytes, n, i &+ (63 &- quotes.leadingZeroBitCount))
                    if e < 0 { return -1 }
                    inString = false
                    i = e
                    continue
                }
                inString = strings &>> 63 != 0
                i &+= escapeCarry ? 65 : 64
                continue
            }
            let outside = m.quote | m.open | m.close, inside = m.quote | m.backslash
            var live = UInt64.max           // the block's bytes not consumed yet
            var next = i &+ 64              // where the next block begins
            while true {
                if inString {
                    let e = inside & live
                    if e == 0 { break }
                    let k = e.trailingZeroBitCount
                    if (m.quote &>> k) & 1 != 0 {
                        inString = false
                        live &= bitsAbove(k)
                    } else if k == 63 {                // a backslash whose escaped byte opens the next block
                        next = i &+ 65
                        break
                    } else {                           // a backslash: it and the byte it escapes
                        live &= bitsAbove(k &+ 1)
                    }
                } else {
                    let e = outside & live
                    if e == 0 { break }
                    let k = e.trailingZeroBitCount
                    if (m.quote &>> k) & 1 != 0 {
                        inString = true
                    } else if closesValue(open: (m.open &>> k) & 1 != 0, &d) {
                        depth = d
                        return i &+ k
                    }
                    live &= bitsAbove(k)
                }
            }
            i = next
        }
        return -1
    }

    /// The bits above bit `k` (0…63): none above bit 63, where a single shift by `k + 1`
    /// would wrap to a shift by 0.
    @inline(__always)
    static func bitsAbove(_ k: Int) -> UInt64 { (UInt64.max &<< k) &<< 1 }
    #endif
}

#if arch(x86_64)
/// Where the bytes the nested skip looks at are in a 64-byte block: bit k of each mask stands
/// for byte k. Four 16-byte loads, each compared with `"`, `\`, and — folded to lower case, so
/// one compare takes `[` with `{` and one `]` with `}` — the brackets; `pmovmskb` gathers each
/// comparison's sign bits.
struct BlockMasks {
    var quote: UInt64 = 0, backslash: UInt64 = 0, open: UInt64 = 0, close: UInt64 = 0

    /// The 64 bytes at `p`, all readable.
    @inline(__always)
    init(_ p: UnsafeRawPointer) {
        let quoteByte = _mm_set1_epi8(0x22), backslashByte = _mm_set1_epi8(0x5C)
        let openByte = _mm_set1_epi8(0x7B), closeByte = _mm_set1_epi8(0x7D), fold = _mm_set1_epi8(0x20)
        for k in 0..<4 {
            let v = _mm_loadu_si128((p + 16 &* k).assumingMemoryBound(to: __m128i.self))
            let f = _mm_or_si128(v, fold)
            quote |= Self.bits(_mm_cmpeq_epi8(v, quoteByte), k)
            backslash |= Self.bits(_mm_cmpeq_epi8(v, backslashByte), k)
            open |= Self.bits(_mm_cmpeq_epi8(f, openByte), k)
            close |= Self.bits(_mm_cmpeq_epi8(f, closeByte), k)
        }
    }

    /// The `count` (< 64) bytes at `p`, copied into a zeroed block (NUL matches no mask).
    @inline(__always)
    init(tail p: UnsafePointer<UInt8>, count: Int) {
        var block: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        self = withUnsafeMutableBytes(of: &block) { t in
            t.copyMemory(from: UnsafeRawBufferPointer(start: p, count: count))
            return BlockMasks(UnsafeRawPointer(t.baseAddress.unsafelyUnwrapped))
        }
    }

    @inline(__always)
    static func bits(_ comparison: __m128i, _ k: Int) -> UInt64 {
        UInt64(UInt32(bitPattern: _mm_movemask_epi8(comparison))) &<< (16 &* k)
    }
}
#endif
