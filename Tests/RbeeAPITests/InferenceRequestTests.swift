import Foundation
import Testing

@testable import RbeeAPI

@Suite struct InferenceRequestTests {
    private func parse(_ json: String) throws -> InferenceRequest {
        try InferenceRequest(json: JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)))
    }

    private func fieldErrors(_ json: String) -> [String] {
        do {
            _ = try parse(json)
            return []
        } catch let error as RbeeError {
            return error.fieldErrors.map(\.field)
        } catch {
            return ["unexpected \(error)"]
        }
    }

    @Test func defaultsApplyToAMinimalPrompt() throws {
        let request = try parse(#"{"prompt":"hi"}"#)
        #expect(request.prompt == .text("hi"))
        #expect(request.maxTokens == 256)
        #expect(request.sampling.temperature == 0.7)
        #expect(request.stream)
        #expect(!request.ignoreEOS)
        #expect(request.stop.isEmpty)
    }

    @Test func everyBadFieldIsReportedAtOnce() {
        let fields = fieldErrors(
            #"{"prompt":5,"max_tokens":0,"temperature":3,"top_p":"x","seed":-1,"stop":["a","b","c","d","e"],"stream":"yes","job_id":"../x"}"#)
        #expect(Set(fields) == ["prompt", "max_tokens", "temperature", "top_p", "seed", "stop", "stream", "job_id"])
    }

    @Test func promptAndMessagesAreExclusiveAndOneIsRequired() {
        #expect(fieldErrors(#"{"max_tokens":5}"#) == ["prompt"])
        #expect(fieldErrors(#"{"prompt":"a","messages":[{"role":"user","content":"b"}]}"#) == ["prompt"])
        #expect(fieldErrors(#"{"messages":[{"role":"user"}]}"#) == ["messages[0]"])
        #expect(fieldErrors(#"{"messages":[]}"#) == ["messages"])
        #expect(fieldErrors(#"{"prompt":""}"#) == ["prompt"])
    }

    @Test func stopAcceptsAStringOrUpToFourStrings() throws {
        #expect(try parse(#"{"prompt":"a","stop":"\n"}"#).stop == ["\n"])
        #expect(try parse(#"{"prompt":"a","stop":["x","y"]}"#).stop == ["x", "y"])
        #expect(fieldErrors(#"{"prompt":"a","stop":[""]}"#) == ["stop"])
        #expect(fieldErrors(#"{"prompt":"a","stop":[1]}"#) == ["stop"])
    }

    @Test func aNonObjectBodyIsRefused() {
        #expect(fieldErrors("[1,2]") == ["body"])
    }

    @Test func integersMustBeWhole() {
        #expect(fieldErrors(#"{"prompt":"a","max_tokens":1.5}"#) == ["max_tokens"])
        #expect(fieldErrors(#"{"prompt":"a","max_tokens":32769}"#) == ["max_tokens"])
    }
}
