import Foundation
import Testing

@testable import RbeeAPI

@Suite struct SSEParserTests {
    @Test func framesSplitAcrossChunksAreReassembled() throws {
        var parser = SSEParser()
        let stream = Array((SSE.frame(InferenceEvent.token(text: "héllo", index: 0)) + SSE.keepAlive + SSE.done).utf8)
        var messages: [SSE.Message] = []
        // One byte at a time: the worst split, including inside "é".
        for byte in stream { messages += parser.feed([byte]) }
        #expect(messages.count == 3)
        #expect(messages[1] == .comment("keep-alive"))
        #expect(messages[2] == .data("[DONE]"))
        guard case .data(let json) = messages[0] else {
            Issue.record("expected data")
            return
        }
        #expect(try JSONDecoder().decode(InferenceEvent.self, from: Data(json.utf8)) == .token(text: "héllo", index: 0))
    }

    @Test func crlfLineEndingsAndMultiLineDataAreAccepted() {
        var parser = SSEParser()
        #expect(parser.feed(Array("data: a\r\ndata: b\r\n\r\n".utf8)) == [.data("a\nb")])
    }

    @Test(arguments: ["plain", "quote \" and \\ backslash", "line\nbreak\ttab\r", "\u{01}\u{1F}\u{08}\u{0C}", "é🐝日本", "</script>/"])
    func handEncodedTokenFramesMatchJSONEncoder(text: String) {
        #expect(SSE.tokenFrame(text: text, index: 42) == SSE.frame(InferenceEvent.token(text: text, index: 42)))
    }

    @Test func eventsRoundTripThroughJSON() throws {
        let events: [InferenceEvent] = [
            .started(jobID: "j1", model: "m", queueMs: 1.5),
            .token(text: "x", index: 3),
            .end(GenerationStats(tokensOut: 2, promptTokens: 3, ttftMs: 4, decodeMs: 5, tokensPerSec: 6, stopReason: .stopSequence)),
            .error(RbeeError(.internalError, "boom")),
        ]
        for event in events {
            let data = try JSONEncoder().encode(event)
            #expect(try JSONDecoder().decode(InferenceEvent.self, from: data) == event)
        }
        let end = String(decoding: try JSONEncoder().encode(events[2]), as: UTF8.self)
        #expect(end.contains(#""stop_reason":"stop_sequence""#))
        #expect(end.contains(#""type":"end""#))
    }
}
