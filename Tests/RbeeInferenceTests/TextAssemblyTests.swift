import Testing

@testable import RbeeInference

@Suite struct UTF8AssemblerTests {
    @Test func aCharacterSplitAcrossTokensIsEmittedOnceWhole() {
        var assembler = UTF8Assembler()
        let bytes = Array("a🐝é".utf8)  // 1 + 4 + 2 bytes
        var out: [String] = []
        for byte in bytes { out.append(assembler.append([byte])) }
        #expect(out.filter { !$0.isEmpty } == ["a", "🐝", "é"])
        #expect(assembler.flush() == "")
    }

    @Test func aTruncatedCharacterAtTheEndBecomesAReplacement() {
        var assembler = UTF8Assembler()
        #expect(assembler.append(Array("x".utf8) + [0xE6, 0x97]) == "x")
        #expect(assembler.flush() == "\u{FFFD}")
    }
}

@Suite struct StopSequenceMatcherTests {
    private func run(_ stops: [String], _ pieces: [String]) -> (emitted: String, stopped: Bool) {
        var matcher = StopSequenceMatcher(stops)
        var emitted = ""
        for piece in pieces {
            let (emit, stopped) = matcher.feed(piece)
            emitted += emit
            if stopped { return (emitted, true) }
        }
        return (emitted + matcher.flush(), false)
    }

    @Test func aStopSplitAcrossPiecesIsFoundAndNeverEmitted() {
        let result = run(["</end>"], ["Hello </", "en", "d> trailing"])
        #expect(result == ("Hello ", true))
    }

    @Test func textThatMightStartAStopIsHeldBackUntilResolved() {
        var matcher = StopSequenceMatcher(["STOP"])
        #expect(matcher.feed("go ST") == ("go ", false))
        #expect(matcher.feed("AY") == ("STAY", false))
    }

    @Test func theEarliestOfSeveralStopsWins() {
        #expect(run(["world", "lo w"], ["hello world"]) == ("hel", true))
    }

    @Test func multiByteStopsMatchOnCharacterBoundaries() {
        #expect(run(["。"], ["日本", "の首都", "は東京", "。次"]) == ("日本の首都は東京", true))
    }

    @Test func heldTextIsReleasedWhenGenerationEnds() {
        #expect(run(["abc"], ["xx", "ab"]) == ("xxab", false))
    }
}
