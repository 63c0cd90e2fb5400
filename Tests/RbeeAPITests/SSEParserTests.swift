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

    @Test func tokenFramesAreReadBackWithoutJSONDecoderExactlyAsItWouldReadThem() throws {
        let pieces = ["hello", " wor", "é\"\\\n\r\t\u{08}\u{0C}\u{01}\u{1F}", "🐝 bees", "", "日本語", "a/b"]
        for (index, text) in pieces.enumerated() {
            let frame = SSE.tokenFrame(text: text, index: index * 1000)
            let payload = String(frame.dropFirst(6).dropLast(2))
            let fast = try #require(SSE.tokenPayload(payload), "\(payload)")
            #expect(fast.text == text && fast.index == index * 1000)
            #expect(InferenceEvent.decodeFast(payload) == (try JSONDecoder().decode(InferenceEvent.self, from: Data(payload.utf8))))
        }
        // Escapes another encoder may write are read as JSONDecoder reads them.
        for payload in [#"{"i":3,"t":"\u00e9\ud83d\udc1d\/","type":"token"}"#, #"{"i":0,"t":"x\u0041","type":"token"}"#] {
            let decoded = try JSONDecoder().decode(InferenceEvent.self, from: Data(payload.utf8))
            #expect(InferenceEvent.decodeFast(payload) == decoded, "\(payload)")
        }
        // Anything else is left to JSONDecoder.
        for payload in [
            #"{"type":"end","tokens_out":1}"#, #"{"i":1,"t":"a\"b","type":"token"}"#.replacingOccurrences(of: #"\""#, with: "\""),
            #"{"i":,"t":"a","type":"token"}"#, #"{"i":1,"t":"\ud83d","type":"token"}"#, #"{"i":1,"t":"\q","type":"token"}"#,
        ] {
            #expect(SSE.tokenPayload(payload) == nil, "\(payload)")
        }
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
