/// Joins token bytes into whole UTF-8 text: a character split across tokens is held until its
/// last byte arrives, then emitted once, whole.
struct UTF8Assembler {
    private var carry: [UInt8] = []

    /// Appends `bytes` and returns the text that is now complete.
    mutating func append(_ bytes: some Sequence<UInt8>) -> String {
        carry.append(contentsOf: bytes)
        let complete = Self.completePrefixLength(carry)
        guard complete > 0 else { return "" }
        let text = String(decoding: carry[..<complete], as: UTF8.self)
        carry.removeFirst(complete)
        return text
    }

    /// Whatever is held at the end of generation; a truncated character becomes U+FFFD.
    mutating func flush() -> String {
        defer { carry.removeAll() }
        return carry.isEmpty ? "" : String(decoding: carry, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a multi-byte character.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        // Look back at most 3 bytes for the lead byte of the last character.
        var index = bytes.count - 1
        var continuation = 0
        while index >= 0, continuation < 4, bytes[index] & 0xC0 == 0x80 {
            continuation += 1
            index -= 1
        }
        guard index >= 0 else { return bytes.count }
        let lead = bytes[index]
        let needed: Int
        switch lead {
        case 0x00..<0x80: needed = 1
        case 0xC0..<0xE0: needed = 2
        case 0xE0..<0xF0: needed = 3
        case 0xF0..<0xF8: needed = 4
        default: return bytes.count  // invalid lead byte: let String decoding replace it
        }
        return continuation + 1 >= needed ? bytes.count : index
    }
}
