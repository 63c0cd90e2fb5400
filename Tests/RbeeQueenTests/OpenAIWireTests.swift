import Foundation
import RbeeAPI
import Testing

@testable import RbeeQueen

/// OpenAI's wire as the queen writes it, pinned byte for byte: what clients and their test
/// suites parse.
@Suite struct OpenAIWireTests {
    let stats = GenerationStats(tokensOut: 5, promptTokens: 7, ttftMs: 10, decodeMs: 20, tokensPerSec: 50, stopReason: .maxTokens, cachedTokens: 3)

    func stream(_ chat: Bool, _ events: [TaskEvent], includeUsage: Bool = true) async -> [String] {
        let (outputs, continuation) = AsyncStream.makeStream(of: TaskOutput.self)
        for event in events { continuation.yield(.event(event)) }
        continuation.finish()
        let frames = OpenAIFrames(outputs: outputs, chat: chat, id: "chatcmpl-1", model: "gemma", includeUsage: includeUsage)
        var lines: [String] = []
        for await frame in frames { lines.append(frame) }
        return lines
    }

    func frame(_ json: String) -> String { "data: " + json + "\n\n" }

    @Test func aChatStreamIsRoleThenDeltasThenTheEndWithUsage() async {
        let frames = OpenAIFrames(outputs: AsyncStream { $0.finish() }, chat: true, id: "chatcmpl-1", model: "gemma", includeUsage: true)
        let created = frames.created
        let lines = await stream(
            true, [.queued(position: 2), .started(taskID: "t", model: "gemma", hive: "h", workerID: "w", queueMs: 1), .token(text: "Hi", index: 0), .end(stats)])
        #expect(lines.first == ": queued at position 2\n\n")
        #expect(lines.contains(frame(#"{"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"created":\#(created),"id":"chatcmpl-1","model":"gemma","object":"chat.completion.chunk"}"#)))
        #expect(lines.contains(frame(#"{"choices":[{"delta":{"content":"Hi"},"finish_reason":null,"index":0}],"created":\#(created),"id":"chatcmpl-1","model":"gemma","object":"chat.completion.chunk"}"#)))
        #expect(lines.contains(frame(#"{"choices":[{"delta":{},"finish_reason":"length","index":0}],"created":\#(created),"id":"chatcmpl-1","model":"gemma","object":"chat.completion.chunk","usage":{"completion_tokens":5,"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens":7,"prompt_tokens_details":{"cached_tokens":3},"total_tokens":12}}"#)))
        #expect(lines.last == SSE.done)
    }

    @Test func theHandWrittenTokenChunkIsWhatTheEncoderWrites() {
        for chat in [true, false] {
            let frames = OpenAIFrames(outputs: AsyncStream { $0.finish() }, chat: chat, id: "id-\"é/", model: "m\\n", includeUsage: true)
            let parts = frames.tokenChunkParts()
            for text in ["plain", "é\"\\\n\t\u{01}", "🐝", ""] {
                var handWritten = parts.prefix
                SSE.appendJSONString(text, to: &handWritten)
                handWritten += parts.suffix
                let encoded =
                    chat
                    ? OpenAIWire.frame(
                        OpenAIWire.Completion(
                            id: frames.id, object: "chat.completion.chunk", created: frames.created, model: frames.model,
                            choices: [OpenAIWire.ChatDelta(content: text)], usage: nil), encoder: OpenAIWire.encoder())
                    : OpenAIWire.frame(
                        OpenAIWire.Completion(
                            id: frames.id, object: "text_completion", created: frames.created, model: frames.model,
                            choices: [OpenAIWire.TextChoice(text: text)], usage: nil), encoder: OpenAIWire.encoder())
                #expect(handWritten == encoded)
            }
        }
    }

    @Test func aTextStreamAndItsErrorUseOpenAIsShapes() async {
        let lines = await stream(false, [.token(text: "a", index: 0), .error(RbeeError(.workerCrashed, "gone"))])
        #expect(lines.contains { $0.contains(#""object":"text_completion""#) && $0.contains(#""logprobs":null,"text":"a""#) })
        #expect(lines.contains(frame(#"{"error":{"code":"worker_crashed","message":"gone","param":null,"type":"server_error"}}"#)))
    }

    @Test func wholeAnswersAndErrors() throws {
        let whole = WholeTask(model: "gemma", hive: "h", workerID: "w", text: "Hello", stats: stats)
        let chat = OpenAIRoutes.answer(whole, id: "chatcmpl-1", model: "gemma", chat: true)
        #expect(chat.headers[.contentType] == "application/json")
        let body = String(decoding: OpenAIWire.json(
            OpenAIWire.Completion(id: "x", object: "chat.completion", created: 1, model: "gemma",
                choices: [OpenAIWire.ChatChoice(message: .init(content: "Hello"), finishReason: "stop")], usage: OpenAIWire.Usage(stats))), as: UTF8.self)
        #expect(body == #"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Hello","role":"assistant"}}],"created":1,"id":"x","model":"gemma","object":"chat.completion","usage":{"completion_tokens":5,"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens":7,"prompt_tokens_details":{"cached_tokens":3},"total_tokens":12}}"#)
        let invalid = OpenAIWire.ErrorBody(RbeeError.invalid([.init(field: "messages", message: "required")]))
        #expect(String(decoding: OpenAIWire.json(invalid), as: UTF8.self) == #"{"error":{"code":"invalid_request","message":"invalid request: messages: required","param":"messages","type":"invalid_request_error"}}"#)
        let missing = OpenAIWire.ErrorBody(RbeeError(.modelNotFound, "no such model"))
        #expect(missing.error.code == "model_not_found" && missing.error.type == "not_found_error")
    }

    /// Tool calls and reasoning in OpenAI's shapes: a call's first chunk has its index, id, type
    /// and name, later ones the index and arguments; reasoning goes to `reasoning_content`; the
    /// end says `tool_calls`. A whole answer has `message.tool_calls` and `content: null`.
    @Test func toolCallsAndReasoning() async throws {
        let frames = OpenAIFrames(outputs: AsyncStream { $0.finish() }, chat: true, id: "chatcmpl-1", model: "gemma", includeUsage: false)
        let created = frames.created
        var called = GenerationStats(tokensOut: 9, promptTokens: 7, ttftMs: 1, decodeMs: 2, tokensPerSec: 3, stopReason: .eos, reasoningTokens: 2, toolCalls: 1)
        let lines = await stream(
            true,
            [
                .reasoning(text: "Paris.", index: 0), .toolCall(ToolCallDelta(index: 0, id: "call_1", name: "get_weather", arguments: "{")),
                .toolCall(ToolCallDelta(index: 0, arguments: #""city":"Paris"}"#)), .end(called),
            ], includeUsage: false)
        let tail = #","created":\#(created),"id":"chatcmpl-1","model":"gemma","object":"chat.completion.chunk"}"#
        #expect(lines.contains(frame(#"{"choices":[{"delta":{"reasoning_content":"Paris."},"finish_reason":null,"index":0}]"# + tail)), "\(lines)")
        #expect(lines.contains(frame(#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{","name":"get_weather"},"id":"call_1","index":0,"type":"function"}]},"finish_reason":null,"index":0}]"# + tail)), "\(lines)")
        #expect(lines.contains(frame(#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"\"city\":\"Paris\"}"},"index":0}]},"finish_reason":null,"index":0}]"# + tail)), "\(lines)")
        #expect(lines.contains(frame(#"{"choices":[{"delta":{},"finish_reason":"tool_calls","index":0}]"# + tail)), "\(lines)")
        called.stopReason = .maxTokens
        #expect(OpenAIWire.finishReason(called) == "length")

        let message = OpenAIWire.Message(content: nil, toolCalls: [ToolCall(id: "call_1", name: "get_weather", arguments: "{}")])
        let body = String(decoding: OpenAIWire.json(message), as: UTF8.self)
        #expect(body == #"{"content":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{}","name":"get_weather"},"id":"call_1","type":"function"}]}"#)
    }
}
