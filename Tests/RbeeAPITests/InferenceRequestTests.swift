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

    @Test func anOutputConstraintComesInOneOfThreeFields() throws {
        #expect(try parse(#"{"prompt":"a"}"#).constraint == nil)
        #expect(try parse(#"{"prompt":"a","response_format":{"type":"text"}}"#).constraint == nil)
        #expect(try parse(#"{"prompt":"a","response_format":{"type":"json_object"}}"#).constraint == .jsonObject)
        let schema: JSONValue = ["type": "object", "properties": ["n": ["type": "integer"]]]
        let openAI = #"{"prompt":"a","response_format":{"type":"json_schema","json_schema":{"name":"n","strict":true,"schema":{"type":"object","properties":{"n":{"type":"integer"}}}}}}"#
        #expect(try parse(openAI).constraint == .jsonSchema(schema, field: "response_format.json_schema.schema"))
        #expect(try parse(#"{"prompt":"a","json_schema":{"type":"object","properties":{"n":{"type":"integer"}}}}"#).constraint == .jsonSchema(schema))
        #expect(try parse(#"{"prompt":"a","grammar":"root ::= \"x\""}"#).constraint == .grammar(#"root ::= "x""#))
        // What a worker is sent: the validated constraint in its native field.
        let request = try parse(openAI)
        #expect(try InferenceRequest(json: request.json).constraint == .jsonSchema(schema, field: "response_format.json_schema.schema"))
        let withSchema = try parse(#"{"prompt":"a","response_format":{"type":"json_object","schema":{"type":"object","properties":{"n":{"type":"integer"}}}}}"#)
        #expect(try InferenceRequest(json: withSchema.json).constraint == .jsonSchema(schema, field: "response_format.schema"))
        #expect(try InferenceRequest(json: try parse(#"{"prompt":"a","response_format":{"type":"json_object"}}"#).json).constraint == .jsonObject)
    }

    @Test func aConstraintThatCannotBeHonouredNamesItsField() {
        #expect(Set(fieldErrors(#"{"prompt":"a","json_schema":{},"grammar":"root ::= \"x\""}"#)) == ["json_schema", "grammar"])
        #expect(fieldErrors(#"{"prompt":"a","response_format":{"type":"yaml"}}"#) == ["response_format.type"])
        #expect(fieldErrors(#"{"prompt":"a","response_format":"json"}"#) == ["response_format"])
        #expect(fieldErrors(#"{"prompt":"a","response_format":{"type":"json_schema"}}"#) == ["response_format.json_schema"])
        #expect(fieldErrors(#"{"prompt":"a","response_format":{"type":"json_schema","json_schema":{"name":"n"}}}"#) == ["response_format.json_schema.schema"])
        #expect(fieldErrors(#"{"prompt":"a","response_format":{"type":"json_schema","json_schema":{"strict":"yes","schema":{}}}}"#) == ["response_format.json_schema.strict"])
        #expect(fieldErrors(#"{"prompt":"a","json_schema":[1]}"#) == ["json_schema"])
        #expect(fieldErrors(#"{"prompt":"a","grammar":"  "}"#) == ["grammar"])
        #expect(fieldErrors(#"{"prompt":"a","grammar":"root ::= \"x\"","ignore_eos":true}"#) == ["ignore_eos"])
    }

    /// Keywords llama.cpp's converter would ignore are refused where they appear, however deep.
    @Test func keywordsTheGrammarCannotEnforceAreRefusedWithTheirPath() throws {
        let errors: [RbeeError.FieldError]
        do {
            _ = try parse(#"{"prompt":"a","json_schema":{"type":"object","properties":{"tags":{"type":"array","uniqueItems":true,"items":{"type":"integer","multipleOf":2}}}}}"#)
            errors = []
        } catch let error as RbeeError {
            errors = error.fieldErrors
        }
        let messages = Dictionary(errors.map { ($0.field, $0.message) }, uniquingKeysWith: { $0 + $1 })
        #expect(messages.count == 2, "\(errors)")
        #expect(messages["json_schema.properties.tags"]?.contains("uniqueItems") == true, "\(errors)")
        #expect(messages["json_schema.properties.tags.items"]?.contains("multipleOf") == true, "\(errors)")
        // Annotations are fine.
        #expect(try parse(#"{"prompt":"a","json_schema":{"title":"T","description":"d","$schema":"x","type":"string","examples":["e"]}}"#).constraint != nil)
    }

    /// A field no worker honours is refused by name with its own code, never silently dropped.
    @Test func aFieldRbeeDoesNotHonourIsRefusedByName() throws {
        do {
            _ = try parse(#"{"prompt":"a","logit_bias":{"1":2},"functions":[],"max_tokens":2}"#)
            Issue.record("an unsupported field must be refused")
        } catch let error as RbeeError {
            #expect(error.code == .unsupportedParameter && error.httpStatus == 400)
            #expect(error.fieldErrors.map(\.field) == ["functions", "logit_bias"], "\(error)")
        }
        let penalised = try parse(#"{"prompt":"a","frequency_penalty":1.5,"presence_penalty":-0.5}"#)
        #expect(penalised.sampling.frequencyPenalty == 1.5 && penalised.sampling.presencePenalty == -0.5)
        #expect(try InferenceRequest(json: penalised.json).sampling == penalised.sampling)
        #expect(fieldErrors(#"{"prompt":"a","frequency_penalty":3}"#) == ["frequency_penalty"])
    }
}
