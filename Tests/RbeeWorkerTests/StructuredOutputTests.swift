import Foundation
import RbeeAPI
import RbeeTestSupport
import Testing

/// Structured output: `response_format`, `json_schema` and `grammar` become a llama.cpp grammar
/// that constrains decoding, so the answer follows it whatever the model would have said; what
/// cannot be enforced is a 400 before anything is queued.
@Suite(.serialized) struct StructuredOutputTests {
    static let personSchema = #"{"type":"object","properties":{"name":{"type":"string","maxLength":40},"age":{"type":"integer","minimum":18,"maximum":99}},"required":["name","age"],"additionalProperties":false}"#
    static let questions = [
        "Invent a character for a fantasy novel.", "Describe the oldest person in your village.", "Who won the chess tournament?",
        "Tell me about a famous sailor.", "Introduce a new colleague.",
    ]

    static func ask(_ worker: RunningWorker, _ question: String, _ fields: String, maxTokens: Int = 96) async throws
        -> (status: Int, result: InferenceResult?, body: String)
    {
        let quoted = String(decoding: try JSONEncoder().encode(question), as: UTF8.self)
        let (response, body) = try await post(
            worker.baseURL + "/v1/inference",
            json: #"{"messages":[{"role":"user","content":\#(quoted)}],"max_tokens":\#(maxTokens),"temperature":0,"stream":false,\#(fields)}"#)
        let text = String(decoding: body, as: UTF8.self)
        return (Int(response.status.code), response.status == .ok ? try decode(InferenceResult.self, body) : nil, text)
    }

    /// Whether `text` is a JSON object with a string `name` of at most 40 characters and an integer
    /// `age` in 18…99, and nothing else.
    static func isPerson(_ text: String) -> Bool {
        struct Person: Decodable {
            var name: String
            var age: Int
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], Set(object.keys) == ["name", "age"],
            let person = try? JSONDecoder().decode(Person.self, from: Data(text.utf8))
        else { return false }
        return person.name.count <= 40 && (18...99).contains(person.age)
    }

    /// Five questions with the same schema, streamed and whole: every answer validates, and the
    /// streamed tokens make the same text as the whole answer.
    @Test func everyAnswerFollowsTheSchema() async throws {
        let worker = try await RunningWorker.start(model: instructModelPath)
        await worker.waitLoaded()
        let format = #""response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,"schema":\#(Self.personSchema)}}"#
        for question in Self.questions {
            let (status, result, body) = try await Self.ask(worker, question, format)
            #expect(status == 200, "\(body)")
            let answer = try #require(result)
            #expect(Self.isPerson(answer.text), "\(question) → \(answer.text)")
            #expect(answer.stats.stopReason == .eos, "\(answer.stats)")
            let quoted = String(decoding: try JSONEncoder().encode(question), as: UTF8.self)
            var stream = try await EventStreamClient.open(
                worker.baseURL + "/v1/inference",
                json: #"{"messages":[{"role":"user","content":\#(quoted)}],"max_tokens":96,"temperature":0,"json_schema":\#(Self.personSchema)}"#)
            let transcript = try await stream.collect()
            #expect(transcript.endsProperly && transcript.text == answer.text, "\(transcript.text)")
        }
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    /// `json_object` gives a JSON object; the grammar `root ::= "yes" | "no"` gives exactly one of
    /// its two words, on the base model as on the instruct one.
    @Test(arguments: [modelPath, instructModelPath]) func jsonObjectsAndAGrammar(model: String) async throws {
        let worker = try await RunningWorker.start(model: model)
        await worker.waitLoaded()
        let (status, result, body) = try await Self.ask(
            worker, "Give the capital and population of France.", #""response_format":{"type":"json_object"}"#, maxTokens: 200)
        #expect(status == 200, "\(body)")
        if let answer = result, answer.stats.stopReason == .eos {
            let object = try? JSONSerialization.jsonObject(with: Data(answer.text.utf8))
            #expect(object is [String: Any], "\(answer.text)")
        } else {
            Issue.record("json_object did not complete within 200 tokens: \(body)")
        }
        for question in ["Is the sky blue?", "Is fire cold?", "Can fish fly?", "Is two more than one?"] {
            let (status, result, body) = try await Self.ask(worker, question + " Answer yes or no.", #""grammar":"root ::= \"yes\" | \"no\"""#)
            #expect(status == 200 && ["yes", "no"].contains(result?.text ?? ""), "\(question) → \(body)")
        }
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    /// A schema or grammar that cannot be enforced is a 400 naming the field and the fault, before
    /// anything is queued; the worker goes on serving.
    @Test func whatCannotBeEnforcedIsRefused() async throws {
        let worker = try await RunningWorker.start(model: instructModelPath)
        await worker.waitLoaded()
        let cases: [(fields: String, field: String, says: String)] = [
            (#""json_schema":{"type":"object","properties":5}"#, "json_schema", "properties must be an object"),
            (#""response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":5}}}"#, "response_format.json_schema.schema", "properties must be an object"),
            (#""grammar":"root ::= \"yes\" |\nanswer ::= yes no""#, "grammar", "line 2, column 8"),
            (#""grammar":"root ::= answer""#, "grammar", "answer is used but never defined"),
            (#""grammar":"start ::= \"a\"""#, "grammar", "no root rule"),
            (#""grammar":"root ::= root \"a\"""#, "grammar", "left-recursive"),
            (#""json_schema":{"type":"integer","multipleOf":3}"#, "json_schema", "multipleOf"),
            (#""json_schema":{"type":"string","pattern":"[0-9]+"}"#, "json_schema", "pattern [0-9]+ is not supported"),
            (#""json_schema":{"type":"object"},"grammar":"root ::= \"a\"""#, "grammar", "at most one"),
            (#""response_format":{"type":"xml"}"#, "response_format.type", "json_object"),
            (#""response_format":{"type":"json_object"},"ignore_eos":true"#, "ignore_eos", "cannot be combined"),
        ]
        for (fields, field, says) in cases {
            let (status, _, body) = try await Self.ask(worker, "Hello", fields)
            #expect(status == 400, "\(fields) → \(body)")
            let error = try? decode(ErrorEnvelope.self, Data(body.utf8)).error
            #expect(error?.code == .invalidRequest && error?.fieldErrors.contains { $0.field == field && $0.message.contains(says) } == true, "\(fields) → \(body)")
        }
        let (status, result, body) = try await Self.ask(worker, "Is water wet? Answer yes or no.", #""grammar":"root ::= \"yes\" | \"no\"""#)
        #expect(status == 200 && ["yes", "no"].contains(result?.text ?? ""), "\(body)")
        #expect(try await health(worker).slotsBusy == 0)
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    /// `max_tokens` reached before the grammar completes ends with `max_tokens` (OpenAI's `length`):
    /// the client can tell the JSON is cut.
    @Test func aGrammarCutByMaxTokensSaysSo() async throws {
        let worker = try await SharedWorker.get()
        let (status, result, body) = try await Self.ask(worker, "List twenty fruits.", #""json_schema":{"type":"array","items":{"type":"string"},"minItems":20}"#, maxTokens: 8)
        #expect(status == 200, "\(body)")
        #expect(result?.stats.stopReason == .maxTokens && result?.stats.tokensOut == 8, "\(body)")
        #expect((try? JSONSerialization.jsonObject(with: Data((result?.text ?? "").utf8))) == nil, "\(body)")
    }

    /// A constrained and an unconstrained request decoding at once on two slots: the constrained one
    /// follows its grammar, and the seeded unconstrained one gives exactly the text it gives alone.
    @Test func aConstrainedNeighbourChangesNothing() async throws {
        let worker = try await SharedWorker.get()
        let free = inferenceJSON("The history of the printing press", maxTokens: 48, extra: #""temperature":0.8,"seed":7,"cache_prompt":false,"stream":false"#)
        let alone = try decode(InferenceResult.self, try await post(worker.baseURL + "/v1/inference", json: free).1)
        let constrained = #"{"prompt":"A person as JSON:","max_tokens":48,"temperature":0.8,"seed":3,"stream":false,"json_schema":\#(Self.personSchema)}"#
        async let neighbour = post(worker.baseURL + "/v1/inference", json: constrained)
        async let beside = post(worker.baseURL + "/v1/inference", json: free)
        let (withNeighbour, constrainedAnswer) = try await (beside, neighbour)
        let besideResult = try decode(InferenceResult.self, withNeighbour.1)
        let constrainedResult = try decode(InferenceResult.self, constrainedAnswer.1)
        #expect(besideResult.text == alone.text, "alone: \(alone.text)\nbeside a grammar: \(besideResult.text)")
        #expect(constrainedResult.stats.stopReason != .eos || Self.isPerson(constrainedResult.text), "\(constrainedResult.text)")
        #expect(constrainedResult.text.hasPrefix("{"), "\(constrainedResult.text)")
    }
}
