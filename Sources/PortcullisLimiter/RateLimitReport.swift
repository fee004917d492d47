import PortcullisCore

/// What an answer tells the client about its limits: OpenAI's `x-ratelimit-*` fields for the
/// request and token buckets reported (the tier's when it has them, else the first of each
/// kind), from the statuses a decision returned. The one list both the 429's headers and an
/// admitted response's lines come from. A value; no `String` per value on the admitted path.
struct RateLimitReport {
    /// The request's buckets; its indices of the buckets reported as `-requests` and `-tokens`
    /// index `statuses` too.
    let set: BucketSet
    let statuses: BucketStatuses

    /// A field's value: a bucket's capacity (its digits are written once), a count, or a time
    /// until reset in OpenAI's format (`20ms`, `6m0s`).
    enum FieldValue { case capacity(Bucket), count(Int64), reset(Int64) }

    /// Each field in order; each name comes with its `: ` (the lines write it in one copy).
    func forEachField(_ emit: (StaticString, FieldValue) -> Void) {
        if let i = set.requestsBucket {
            emit("x-ratelimit-limit-requests: ", .capacity(set.buckets[i]))
            emit("x-ratelimit-remaining-requests: ", .count(statuses[i].remaining))
            emit("x-ratelimit-reset-requests: ", .reset(statuses[i].resetMillis))
        }
        if let i = set.tokensBucket {
            emit("x-ratelimit-limit-tokens: ", .capacity(set.buckets[i]))
            emit("x-ratelimit-remaining-tokens: ", .count(statuses[i].remaining))
            emit("x-ratelimit-reset-tokens: ", .reset(statuses[i].resetMillis))
        }
    }

    static func put(_ v: FieldValue, into w: inout UnsafeByteWriter) {
        switch v {
        case .capacity(let b): w.put(b.capacityDigits)
        case .count(let n): w.putDecimal(n)
        case .reset(let ms): putDuration(ms, into: &w)
        }
    }

    /// Room for any field's value: a 20-digit count, or the longest duration (`2562047788015h…`).
    static let valueCapacity = 40
    /// Room for all six lines: a name of at most 32 bytes with its `: `, a value, CRLF.
    static let linesCapacity = 6 * (34 + valueCapacity + 2)

    /// The fields as (name, value) pairs: the 429's headers.
    func headers() -> [(String, String)] {
        var out: [(String, String)] = []
        forEachField { name, value in out.append((String(name.description.dropLast(2)), Self.text(value))) }
        return out
    }

    /// A field's value as a String (the 429's headers, tests).
    static func text(_ v: FieldValue) -> String {
        let bytes = [UInt8](unsafeUninitializedCapacity: valueCapacity) { buf, n in
            var w = UnsafeByteWriter(buf)
            put(v, into: &w)
            n = w.count
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The fields as response-head lines, written at the start of `out` (at least
    /// `linesCapacity` bytes); returns the count. The same fields as `forEachField`, in its
    /// order, written straight: each kind's constant start (`BucketSet.requestsLead`,
    /// `tokensLead`) in one copy, then its two changing values (no closure, no value enum per
    /// field; the lines of every admitted response).
    func writeLines(to out: UnsafeMutableRawBufferPointer) -> Int {
        var w = UnsafeByteWriter(out.bindMemory(to: UInt8.self))
        if let i = set.requestsBucket { Self.putLines(set.requestsLead, statuses[i], "\r\nx-ratelimit-reset-requests: ", into: &w) }
        if let i = set.tokensBucket { Self.putLines(set.tokensLead, statuses[i], "\r\nx-ratelimit-reset-tokens: ", into: &w) }
        return w.count
    }

    /// One kind's three lines: its constant start, the remaining count, the reset line's name
    /// (with the CRLF before it) and time.
    @inline(__always)
    static func putLines(_ lead: [UInt8], _ s: BucketStatus, _ resetName: StaticString, into w: inout UnsafeByteWriter) {
        w.put(lead)
        w.putDecimal(s.remaining)
        w.put(resetName)
        putDuration(s.resetMillis, into: &w)
        w.put(13); w.put(10)
    }

    /// OpenAI's reset format: `20ms`, `1s`, `6m0s`, `1h2m3s`.
    static func duration(_ ms: Int64) -> String { text(.reset(ms)) }

    static func putDuration(_ ms: Int64, into w: inout UnsafeByteWriter) {
        if ms < 1000 { w.putDecimal(ms); w.put("ms"); return }
        let total = ms / 1000 + (ms % 1000 == 0 ? 0 : 1)                           // (no overflow at Int64.max)
        let h = total / 3600, m = (total % 3600) / 60, s = total % 60
        if h > 0 { w.putDecimal(h); w.put(104) }                                    // h
        if h > 0 || m > 0 { w.putDecimal(m); w.put(109) }                           // m
        w.putDecimal(s); w.put(115)                                                  // s
    }
}
