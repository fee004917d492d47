/// A JSON object body with a few top-level members replaced or inserted, every other byte kept
/// as the client sent it (key order, number spellings, unknown fields, whitespace). One member
/// (the "slot", e.g. `model`) gets its value per rendering, so a request can be replayed to
/// several targets with a different model each time without re-reading the body.
///
/// The slot is held apart from the other edits: the common request (only `model` rewritten)
/// costs no edit list at all.
public struct JSONMemberEdits: Sendable {
    public struct Edit: Sendable {
        /// Replaced range of the original (empty: an insertion at `range.lowerBound`).
        public let range: Range<Int>
        /// For an insertion, the member name; for a replacement, nil.
        public let insertName: String?
        /// The new value's JSON text; nil for the slot (filled in by `render`).
        public let value: [UInt8]?
    }

    public let original: [UInt8]
    /// The slot's range in `original` (empty: the slot is inserted there), if there is a slot.
    /// The slot's edit is kept as its plain fields, not an `Edit?`: this value is copied and
    /// destroyed once a request, and an optional aggregate costs that through generic witnesses.
    @usableFromInline var slotRange: Range<Int>?
    /// An inserted slot's member name (nil: the slot replaces a value).
    @usableFromInline var slotName: String?
    /// The slot's edit, if any.
    var slot: Edit? { slotRange.map { Edit(range: $0, insertName: slotName, value: nil) } }
    /// Other edits, sorted by position; insertions all sit just after the opening brace.
    @usableFromInline var others: [Edit] = []
    /// Whether the original object has at least one member (an insertion then needs a comma).
    let objectHasMembers: Bool

    public init(original: [UInt8], objectHasMembers: Bool) {
        self.original = original; self.objectHasMembers = objectHasMembers
    }

    /// Every edit in position order (tests, diagnostics).
    public var edits: [Edit] { ordered() }

    /// Replaces the value at `range` (a range `JSONReader.topLevelMembers` returned); a nil
    /// value makes it the slot.
    public mutating func replace(_ range: Range<Int>, with value: [UInt8]?) {
        add(Edit(range: range, insertName: nil, value: value))
    }

    /// Inserts `"name": value` as the first member (`at` is `afterBrace`); a nil value makes it the slot.
    public mutating func insert(_ name: String, at: Int, value: [UInt8]?) {
        add(Edit(range: at..<at, insertName: name, value: value))
    }

    private mutating func add(_ e: Edit) {
        if e.value == nil { slotRange = e.range; slotName = e.insertName; return }
        var i = others.count
        while i > 0 && others[i - 1].range.lowerBound > e.range.lowerBound { i -= 1 }
        others.insert(e, at: i)
    }

    /// The slot merged into `others` by position (a slot insertion goes first at its position).
    private func ordered() -> [Edit] {
        guard let s = slot else { return others }
        var out = others
        var i = 0
        while i < out.count && out[i].range.lowerBound < s.range.lowerBound { i += 1 }
        out.insert(s, at: i)
        return out
    }

    /// The edited body, with `slot` (JSON text) as the slot's value.
    public func render(slot value: [UInt8]) -> [UInt8] {
        guard slotRange != nil || !others.isEmpty else { return original }
        if let r = replacedSlot, original.count <= Self.scratchLimit {
            return Self.replacing(r, of: original, with: value)
        }
        var out: [UInt8] = []
        out.reserveCapacity(original.count + value.count + 32)
        var at = 0
        var insertions = 0
        func emit(_ e: Edit) {
            if e.insertName == nil && insertions > 0 {
                // Insertions precede every replacement (they sit right after the brace).
                if objectHasMembers { out.append(UInt8(ascii: ",")) }
                insertions = -1
            }
            out.append(contentsOf: original[at..<e.range.lowerBound])
            if let name = e.insertName {
                if insertions > 0 { out.append(UInt8(ascii: ",")) }
                out.append(UInt8(ascii: "\""))
                out.append(contentsOf: name.utf8)
                out.append(contentsOf: "\":".utf8)
                insertions += 1
            }
            out.append(contentsOf: e.value ?? value)
            at = e.range.upperBound
        }
        if others.isEmpty, let s = slot {
            emit(s)
        } else {
            for e in ordered() { emit(e) }
        }
        if insertions > 0 && objectHasMembers { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: original[at...])
        return out
    }

    /// Bodies up to this size take `replacing`'s path (a scratch copy costs less than the
    /// per-piece overhead of `append(contentsOf:)` only while the body is small).
    public static var scratchLimit: Int { 16 << 10 }

    /// `original` with `range` replaced by `value` (the usual edit: only `model` rewritten):
    /// three `memcpy`s into a scratch buffer, then one array of the exact size.
    static func replacing(_ range: Range<Int>, of original: [UInt8], with value: [UInt8]) -> [UInt8] {
        let count = original.count - range.count + value.count
        return withUnsafeTemporaryAllocation(byteCount: max(count, 1), alignment: 1) { scratch -> [UInt8] in
            guard let dst = scratch.baseAddress else { return value }
            write(range, of: original, with: value, to: dst)
            return Array(UnsafeRawBufferPointer(start: dst, count: count))
        }
    }

    /// The edited body's size when `write(slot:to:)` can write it into a caller's buffer: only
    /// the slot replaced (the usual alias request), at most `scratchLimit` bytes. Nil otherwise
    /// (`render` builds it).
    /// (`@inlinable`, as `write(slot:to:)`: a caller reading a stored `JSONMemberEdits` then
    /// reads the fields it needs in place instead of copying the whole value to call this.)
    @inlinable
    public func inPlaceCount(slot value: [UInt8]) -> Int? {
        guard let r = replacedSlot else { return nil }
        let n = original.count - r.count + value.count
        return n <= Self.scratchLimit ? n : nil
    }

    /// Writes the edited body (the bytes `render(slot:)` returns) at `dst`, which holds
    /// `inPlaceCount(slot:)` bytes; only when that is not nil.
    @inlinable
    public func write(slot value: [UInt8], to dst: UnsafeMutableRawPointer) {
        guard let r = replacedSlot else { preconditionFailure("write(slot:to:) with other edits: inPlaceCount was nil") }
        Self.write(r, of: original, with: value, to: dst)
    }

    /// The slot's range when the slot is the only edit and replaces a value (`write(slot:to:)`
    /// is then `original` with that range replaced).
    @inlinable
    public var replacedSlot: Range<Int>? { others.isEmpty && slotName == nil ? slotRange : nil }

    /// `original` with `range` replaced by `value`, written at `dst`: three `memcpy`s.
    @inlinable
    public static func write(_ range: Range<Int>, of original: [UInt8], with value: [UInt8], to dst: UnsafeMutableRawPointer) {
        original.withUnsafeBytes { o in
            value.withUnsafeBytes { v in
                if let vb = v.baseAddress { (dst + range.lowerBound).copyMemory(from: vb, byteCount: v.count) }
                guard let src = o.baseAddress else { return }       // (an empty original: range 0..<0)
                dst.copyMemory(from: src, byteCount: range.lowerBound)
                (dst + range.lowerBound + v.count).copyMemory(from: src + range.upperBound, byteCount: o.count - range.upperBound)
            }
        }
    }
}
