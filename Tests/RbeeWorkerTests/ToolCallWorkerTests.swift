import Foundation
import RbeeAPI
import RbeeTestSupport
import Testing

/// Tools on the worker: the model's template shows them, llama.cpp's parser reads the calls out of
/// the output, and a call that must be made is enforced by the calls' grammar, so even Gemma 3
/// 270M (a base model never trained for tools) returns one whose arguments validate.
@Suite(.serialized) struct ToolCallWorkerTests {
    static let weather = #"[{"type":"function","function":{"name":"get_weather","description":"The weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]"#
    static let question = #"[{"role":"user","content":"What is the weather in Paris?"}]"#

    static func worker(template: String?) async throws -> RunningWorker {
        let file = try template.map { try llamaTemplateDirectory() + "/" + $0 }
        let worker = try await RunningWorker.start(model: modelPath) { $0.engine.chatTemplateFile = file }
        await worker.waitLoaded()
        return worker
    }

    static func ask(_ worker: RunningWorker, _ fields: String, messages: String = question, maxTokens: Int = 80) async throws -> (status: Int, body: String) {
        let (response, body) = try await post(
            worker.baseURL + "/v1/inference",
            json: #"{"messages":\#(messages),"max_tokens":\#(maxTokens),"temperature":0,"stream":false,\#(fields)}"#)
        return (Int(response.status.code), String(decoding: body, as: UTF8.self))
    }

    /// A `get_weather` call with a string `city` and nothing else.
    static func isWeatherCall(_ call: ToolCall) -> Bool {
        guard call.name == "get_weather", !call.id.isEmpty,
            let arguments = try? JSONSerialization.jsonObject(with: Data(call.arguments.utf8)) as? [String: Any]
        else { return false }
        return Set(arguments.keys) == ["city"] && arguments["city"] is String
    }

    /// `tool_choice: required` (and a named function): one call, whole and streamed, its arguments
    /// valid; the stream gives the id and name first, then the arguments in pieces; a follow-up
    /// turn with the tool's result renders and completes.
    @Test func aRequiredCallIsMadeWhateverTheModel() async throws {
        let worker = try await Self.worker(template: "Qwen-Qwen3-0.6B.jinja")
        for choice in [#""required""#, #"{"type":"function","function":{"name":"get_weather"}}"#] {
            let (status, body) = try await Self.ask(worker, #""tools":\#(Self.weather),"tool_choice":\#(choice)"#)
            #expect(status == 200, "\(body)")
            let result = try decode(InferenceResult.self, Data(body.utf8))
            #expect(result.toolCalls.count == 1 && result.toolCalls.allSatisfy(Self.isWeatherCall), "\(choice): \(body)")
            #expect(result.stats.stopReason == .eos && result.stats.toolCalls == 1, "\(body)")
        }
        var stream = try await EventStreamClient.open(
            worker.baseURL + "/v1/inference",
            json: #"{"messages":\#(Self.question),"max_tokens":80,"temperature":0,"tools":\#(Self.weather),"tool_choice":"required"}"#)
        let transcript = try await stream.collect()
        let deltas = transcript.events.compactMap { event -> ToolCallDelta? in if case .toolCall(let delta) = event { delta } else { nil } }
        #expect(transcript.endsProperly && deltas.count > 1, "\(transcript.events)")
        #expect(deltas.first?.name == "get_weather" && deltas.first?.id != nil, "\(deltas)")
        #expect(deltas.dropFirst().allSatisfy { $0.name == nil && $0.id == nil && $0.index == 0 }, "\(deltas)")
        var calls: [ToolCall] = []
        deltas.forEach { calls.apply($0) }
        #expect(calls.count == 1 && calls.allSatisfy(Self.isWeatherCall), "\(calls)")
        #expect(transcript.stats?.toolCalls == 1)

        let followUp = #"[{"role":"user","content":"What is the weather in Paris?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"Sunny, 22 C"}]"#
        let (status, body) = try await Self.ask(worker, #""tools":\#(Self.weather),"stop":["<|im_end|>"]"#, messages: followUp)
        #expect(status == 200, "\(body)")
        let answer = try decode(InferenceResult.self, Data(body.utf8))
        #expect(answer.toolCalls.isEmpty && [.stopSequence, .eos, .maxTokens].contains(answer.stats.stopReason), "\(body)")
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    /// Gemma 2's template describes no tools (llama.cpp renders it without them): the generic
    /// format stands in, the tools in the system text and the answer one JSON object, and a forced
    /// call still comes back with valid arguments; with `auto` the model may answer instead.
    @Test func aTemplateWithoutToolsGetsTheGenericFormat() async throws {
        let worker = try await Self.worker(template: "google-gemma-2-2b-it.jinja")
        let (status, body) = try await Self.ask(worker, #""tools":\#(Self.weather),"tool_choice":"required""#)
        #expect(status == 200, "\(body)")
        let result = try decode(InferenceResult.self, Data(body.utf8))
        #expect(result.toolCalls.count == 1 && result.toolCalls.allSatisfy(Self.isWeatherCall), "\(body)")
        #expect(result.stats.stopReason == .eos && result.text.isEmpty, "\(body)")
        let (auto, answer) = try await Self.ask(worker, #""tools":\#(Self.weather)"#, maxTokens: 120)
        #expect(auto == 200, "\(answer)")
        let either = try decode(InferenceResult.self, Data(answer.utf8))
        #expect(either.stats.stopReason == .maxTokens || either.toolCalls.allSatisfy(Self.isWeatherCall), "\(answer)")
        let rendered = try await post(
            worker.baseURL + "/apply-template", json: #"{"messages":\#(Self.question),"tools":\#(Self.weather),"tool_choice":"required"}"#)
        #expect(String(decoding: rendered.1, as: UTF8.self).contains("get_weather"), "the tools are in the prompt")
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    /// Tools the worker cannot honour are a 400 that says why, before anything is queued: a model
    /// without a Jinja template (how to give it one), a tool schema that does not convert, a
    /// `tool_choice` naming no tool, tools beside an output constraint.
    @Test func toolsThatCannotBeHonouredAreRefused() async throws {
        let plain = try await SharedWorker.get()
        let (status, body) = try await Self.ask(plain, #""tools":\#(Self.weather)"#)
        #expect(status == 400 && body.contains("\"field\":\"tools\"") && body.contains("rbee models template"), "\(body)")

        let worker = try await Self.worker(template: "Qwen-Qwen3-0.6B.jinja")
        let cases: [(fields: String, field: String)] = [
            (#""tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":5}}}]"#, "tools[0].function.parameters"),
            (#""tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","not":{}}}}]"#, "tools[0].function.parameters"),
            (#""tools":[{"type":"function","function":{"name":"bad name"}}]"#, "tools[0].function.name"),
            (#""tools":\#(Self.weather),"tool_choice":{"type":"function","function":{"name":"other"}}"#, "tool_choice"),
            (#""tools":\#(Self.weather),"tool_choice":"sometimes""#, "tool_choice"),
            (#""tools":\#(Self.weather),"response_format":{"type":"json_object"}"#, "response_format"),
            (#""tool_choice":"required""#, "tool_choice"),
        ]
        for (fields, field) in cases {
            let (status, body) = try await Self.ask(worker, fields)
            #expect(status == 400 && body.contains("\"field\":\"\(field)\""), "\(fields) → \(body)")
        }
        #expect(try await health(worker).slotsBusy == 0)
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }
}
