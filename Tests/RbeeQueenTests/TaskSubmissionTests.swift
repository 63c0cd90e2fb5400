import Foundation
import RbeeAPI
import Testing

@testable import RbeeQueen

/// Validation at the queen's edge: OpenAI's names and defaults, every field error at once.
@Suite struct TaskSubmissionTests {
    func parse(_ json: String, _ dialect: TaskSubmission.Dialect) throws(RbeeError) -> TaskSubmission {
        let value = (try? JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))) ?? .null
        return try TaskSubmission.parse(value, dialect: dialect)
    }

    func fields(_ json: String, _ dialect: TaskSubmission.Dialect) -> [String] {
        do {
            _ = try parse(json, dialect)
            return []
        } catch {
            return error.code == .invalidRequest ? error.fieldErrors.map(\.field) : ["?"]
        }
    }

    @Test func openAIChatMapsNamesAndDefaults() throws {
        let submission = try parse(
            #"{"model":"gemma","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_completion_tokens":7,"n":1,"#
                + #""presence_penalty":0.5,"stream_options":{"include_usage":false},"seed":3}"#, .chat)
        let request = submission.task
        #expect(request.inference.maxTokens == 7)
        #expect(request.inference.stream == false, "OpenAI routes do not stream unless asked")
        #expect(request.inference.sampling.temperature == 1, "OpenAI's default temperature")
        #expect(request.inference.prompt == .messages([ChatMessage(role: "user", content: "hi")]))
        #expect(submission.includeUsage == false)
        #expect(request.reference == .catalogID("gemma"))
    }

    @Test func everyFieldErrorIsReported() {
        #expect(
            Set(fields(#"{"model":"../x","messages":"no","n":2,"temperature":9,"max_tokens":0,"frequency_penalty":5}"#, .chat))
                == ["model", "messages", "n", "temperature", "max_tokens", "frequency_penalty"])
        #expect(Set(fields(#"{"prompt":""}"#, .native)) == ["model", "prompt"])
        #expect(fields(#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, .completion).contains("messages"))
        #expect(fields(#"{"model":"m","prompt":"x","hive":"a b"}"#, .native) == ["hive"])
        #expect(fields("[1]", .native) == ["body"])
    }

    @Test func nativeTasksStreamByDefault() throws {
        let request = try parse(#"{"model":"hf:org/repo:file.gguf","prompt":"x","hive":"b"}"#, .native).task
        #expect(request.inference.stream)
        #expect(request.hive == "b")
        #expect(request.reference.derivedID == "file")
    }

    @Test func taskEventsRoundTrip() throws {
        let events: [TaskEvent] = [
            .queued(position: 2), .downloading(hive: "b", model: "m", bytesDownloaded: 10, bytesTotal: 20, speedMBps: 1.5, etaS: 3),
            .loading(hive: "b", workerID: "w", layersLoaded: 3, layersTotal: 18),
            .started(taskID: "t", model: "m", hive: "b", workerID: "w", queueMs: 1.5), .token(text: "é\"\n", index: 0),
            .end(GenerationStats(tokensOut: 1, promptTokens: 2, ttftMs: 3, decodeMs: 4, tokensPerSec: 5, stopReason: .eos)),
            .error(RbeeError(.workerCrashed, "gone")),
            .error(RbeeError(.insufficientRAM, "too big", details: ["bytes_needed": 300, "hive": "b"])),
            .error(RbeeError("FROM_A_NEWER_PEER", "a code this version does not know")),
        ]
        for event in events {
            let decoded = try JSONDecoder().decode(TaskEvent.self, from: JSONEncoder().encode(event))
            #expect(decoded == event)
        }
        // The hand-built token frame is what the encoder would write.
        #expect(SSE.tokenFrame(text: "é\"\n\u{1}", index: 4) == SSE.frame(TaskEvent.token(text: "é\"\n\u{1}", index: 4)))
    }
}
