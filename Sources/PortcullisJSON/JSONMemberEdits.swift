import PortcullisCore

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
    /// The slot's edit (`value` nil), if any.
    var slot: Edit?
    /// Other edits, sorted by position; insertions all sit just after the opening brace.
    var others: [Edit] = []
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
        if e.value == nil { slot = e; return }
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

    /// The edited body to send, with `slot` (JSON text) as the slot's value: when the slot's
    /// replacement is the only edit (a request whose `model` alone is rewritten), the original
    /// with that range spliced, not copied; otherwise `render`'s one array.
    public func spliced(slot value: [UInt8]) -> SplicedBytes {
        if others.isEmpty, let s = slot, s.insertName == nil { return SplicedBytes(original, replacing: s.range, with: value) }
        return SplicedBytes(render(slot: value))
    }

    /// The edited body, with `slot` (JSON text) as the slot's value.
    public func render(slot value: [UInt8]) -> [UInt8] {
        guard slot != nil || !others.isEmpty else { return original }
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
}
