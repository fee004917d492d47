/// Seeded randomness and byte-level mutation shared by the parsers' random-input tests.

/// SplitMix64: a small, fast, seedable generator (the same seed gives the same inputs in CI).
public struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}

/// `input` with 1…`maxEdits` random edits: a byte replaced by, or inserted from, `alphabet`, or
/// a byte removed.
public func mutated(_ input: [UInt8], alphabet: [UInt8], maxEdits: Int, using rng: inout SeededRandom) -> [UInt8] {
    var b = input
    for _ in 0..<Int.random(in: 1...maxEdits, using: &rng) {
        let pick = alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]
        if b.isEmpty { b.append(pick); continue }
        let i = Int.random(in: 0..<b.count, using: &rng)
        switch Int.random(in: 0..<3, using: &rng) {
        case 0: b[i] = pick
        case 1: b.remove(at: i)
        default: b.insert(pick, at: i)
        }
    }
    return b
}
