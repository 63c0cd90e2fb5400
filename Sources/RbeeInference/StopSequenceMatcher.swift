/// Finds stop sequences in generated text, across token boundaries. Text that could still be the
/// start of a stop sequence is held back until it is resolved; matched text is never emitted.
struct StopSequenceMatcher {
    private let stops: [[UInt8]]
    private var held: [UInt8] = []

    init(_ stops: [String]) { self.stops = stops.map { Array($0.utf8) }.filter { !$0.isEmpty } }

    /// Feeds complete text; returns what can be emitted now and whether a stop sequence matched
    /// (then generation ends and the held text after the match is dropped).
    mutating func feed(_ text: String) -> (emit: String, stopped: Bool) {
        guard !stops.isEmpty else { return (text, false) }
        held.append(contentsOf: text.utf8)
        if let match = earliestMatch() {
            let emit = String(decoding: held[..<match], as: UTF8.self)
            held.removeAll()
            return (emit, true)
        }
        // Valid UTF-8 self-synchronises: a suffix equal to a prefix of a stop string starts on a
        // character boundary, so the emitted part is whole characters.
        let keep = longestSuffixThatPrefixesAStop()
        let emitCount = held.count - keep
        let emit = String(decoding: held[..<emitCount], as: UTF8.self)
        held.removeFirst(emitCount)
        return (emit, false)
    }

    /// Held text at the end of generation: it never completed a stop sequence, so it is output.
    mutating func flush() -> String {
        defer { held.removeAll() }
        return String(decoding: held, as: UTF8.self)
    }

    private func earliestMatch() -> Int? {
        var best: Int?
        for stop in stops where stop.count <= held.count {
            var start = 0
            while start + stop.count <= held.count, best.map({ start < $0 }) ?? true {
                if held[start..<start + stop.count].elementsEqual(stop) {
                    best = start
                    break
                }
                start += 1
            }
        }
        return best
    }

    private func longestSuffixThatPrefixesAStop() -> Int {
        var longest = 0
        for stop in stops {
            let limit = min(stop.count - 1, held.count)
            var length = limit
            while length > longest {
                if held[(held.count - length)...].elementsEqual(stop[..<length]) {
                    longest = length
                    break
                }
                length -= 1
            }
        }
        return longest
    }
}
