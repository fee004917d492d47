/// A JSON object body with a few top-level members replaced or inserted, every other byte kept
/// as the client sent it (key order, number spellings, unknown fields, whitespace). One member
/// (the "slot", e.g. `model`) gets its value per rendering, so a request can be replayed to
/// several targets with a different model each time without re-reading the body.
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
    /// Sorted by position; insertions all sit just after the opening brace.
    public private(set) var edits: [Edit] = []
    /// Whether the original object has at least one member (an insertion then needs a comma).
    let objectHasMembers: Bool

    public init(original: [UInt8], objectHasMembers: Bool) {
        self.original = original; self.objectHasMembers = objectHasMembers
    }

    /// Replaces the value at `range` (a range `JSONReader.topLevelMembers` returned).
    public mutating func replace(_ range: Range<Int>, with value: [UInt8]?) {
        edits.append(Edit(range: range, insertName: nil, value: value))
        edits.sort { $0.range.lowerBound < $1.range.lowerBound }
    }

    /// Inserts `"name": value` as the first member (`at` is `afterBrace`).
    public mutating func insert(_ name: String, at: Int, value: [UInt8]?) {
        edits.append(Edit(range: at..<at, insertName: name, value: value))
        edits.sort { $0.range.lowerBound < $1.range.lowerBound }
    }

    /// The edited body, with `slot` (JSON text) wherever an edit's value is nil.
    public func render(slot: [UInt8]) -> [UInt8] {
        if edits.isEmpty { return original }
        var out: [UInt8] = []
        out.reserveCapacity(original.count + slot.count + 32)
        var at = 0
        var insertions = 0
        for e in edits {
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
            out.append(contentsOf: e.value ?? slot)
            at = e.range.upperBound
        }
        if insertions > 0 && objectHasMembers { out.append(UInt8(ascii: ",")) }
        out.append(contentsOf: original[at...])
        return out
    }
}
