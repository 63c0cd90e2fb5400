import Foundation
import RbeeAPI
import RbeeTestSupport
import Testing

@testable import RbeeInference

/// Model output read with llama.cpp's parser for the format the template's rendering chose: tool
/// calls and a reasoning block, fed whole or a character at a time (as a stream delivers it),
/// give the same message, and the deltas of the stream add up to it. Two calls where the format
/// has them in one message; Llama 3.x's template refuses a second call in a message ("This model
/// only supports single tool-calls at once!") and gpt-oss ends its turn with `<|call|>` after
/// each, so their models write one call per turn.
@Suite struct ToolCallParsingTests {
    static let weather: JSONValue = [
        "type": "function",
        "function": [
            "name": "get_weather", "description": "The weather in a city",
            "parameters": ["type": "object", "properties": ["city": ["type": "string"]], "required": ["city"]],
        ],
    ]

    struct Family: Sendable, CustomTestStringConvertible {
        var name: String
        var file: String
        var bos = ""
        var eos = ""
        /// What such a model writes: reasoning (where the family has it), then its calls.
        var output: String
        var reasoning = ""
        var cities = ["Paris", "Tokyo"]
        var testDescription: String { name }
    }

    static let families: [Family] = [
        Family(
            name: "Qwen3 (Hermes)", file: "Qwen-Qwen3-0.6B.jinja", eos: "<|im_end|>",
            output: "<think>\nTwo cities, two calls.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}}\n</tool_call>",
            reasoning: "Two cities, two calls."),
        Family(
            name: "Llama 3.1", file: "meta-llama-Llama-3.1-8B-Instruct.jinja", bos: "<|begin_of_text|>", eos: "<|eot_id|>",
            output: "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", cities: ["Paris"]),
        Family(
            name: "Mistral Nemo", file: "mistralai-Mistral-Nemo-Instruct-2407.jinja", bos: "<s>", eos: "</s>",
            output: "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abcDEF123\"}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Tokyo\"}, \"id\": \"ghiJKL456\"}]"),
        Family(
            name: "gpt-oss", file: "openai-gpt-oss-120b.jinja", bos: "<|startoftext|>", eos: "<|return|>",
            output: "<|channel|>analysis<|message|>Paris first.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Paris\"}",
            reasoning: "Paris first.", cities: ["Paris"]),
        Family(
            name: "DeepSeek R1", file: "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", bos: "<｜begin▁of▁sentence｜>", eos: "<｜end▁of▁sentence｜>",
            output: "Two cities, two calls.</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Tokyo\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            reasoning: "Two cities, two calls."),
    ]

    static func rendering(_ family: Family) throws -> ChatRendering {
        let text = try String(contentsOfFile: try llamaTemplateDirectory() + "/" + family.file, encoding: .utf8)
        let templates = try ChatTemplates(text: text, bosToken: family.bos, eosToken: family.eos)
        return try templates.render(
            ChatConversation(
                messages: [ChatMessage(role: "user", content: "Weather in Paris and Tokyo?")], tools: [weather], toolChoice: "auto",
                parallelToolCalls: true, reasoningFormat: "auto"))
    }

    @Test(arguments: families) func callsWholeOrStreamedGiveTheSameMessage(_ family: Family) throws {
        let rendering = try Self.rendering(family)
        let whole = try ChatOutputParser(rendering: rendering).feed(family.output, final: true).message
        #expect(whole.toolCalls.map(\.name) == family.cities.map { _ in "get_weather" }, "\(family.name): \(whole)")
        let arguments = whole.toolCalls.map { try? JSONDecoder().decode([String: String].self, from: Data($0.arguments.utf8)) }
        #expect(arguments == family.cities.map { ["city": $0] }, "\(family.name): \(whole)")
        #expect(whole.reasoningContent.trimmingCharacters(in: .whitespacesAndNewlines) == family.reasoning, "\(family.name): \(whole)")
        #expect(whole.content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(family.name): \(whole)")
        #expect(Set(whole.toolCalls.map(\.id)).count == family.cities.count && whole.toolCalls.allSatisfy { !$0.id.isEmpty })

        // A character at a time, as a stream delivers it; the deltas add up to the same message.
        let parser = try ChatOutputParser(rendering: rendering)
        var deltas: [ChatOutputDelta] = []
        var last = ChatOutputMessage(content: "", reasoningContent: "", toolCalls: [])
        for character in family.output {
            let update = try parser.feed(String(character))
            deltas += update.deltas
            last = update.message
        }
        let end = try parser.feed("", final: true)
        deltas += end.deltas
        last = end.message
        #expect(last.toolCalls.map(\.name) == whole.toolCalls.map(\.name) && last.toolCalls.map(\.arguments) == whole.toolCalls.map(\.arguments), "\(family.name): \(last)")
        #expect(last.reasoningContent == whole.reasoningContent && last.content == whole.content, "\(family.name): \(last)")
        #expect(deltas.compactMap(\.reasoningContent).joined() == last.reasoningContent, "\(family.name)")
        #expect(deltas.compactMap(\.content).joined() == last.content, "\(family.name)")
        for (index, call) in last.toolCalls.enumerated() {
            let pieces = deltas.filter { $0.toolCallIndex == index }
            #expect(pieces.first?.name == call.name && pieces.first?.id == call.id, "\(family.name): \(pieces)")
            #expect(pieces.dropFirst().allSatisfy { $0.name == nil && $0.id == nil }, "\(family.name): \(pieces)")
            #expect(pieces.compactMap(\.arguments).joined() == call.arguments, "\(family.name): \(pieces)")
        }
    }

    /// A call the model breaks off, or writes wrong, ends as plain content: never an error.
    @Test func malformedCallsEndAsContent() throws {
        let rendering = try Self.rendering(Self.families[0])
        for output in ["<tool_call>\n{\"name\": \"get_weather\", \"argum", "<tool_call>\nnot json at all\n</tool_call>", "Just sunny."] {
            let parser = try ChatOutputParser(rendering: rendering)
            var streamed = ""
            for character in output { streamed += try parser.feed(String(character)).deltas.compactMap(\.content).joined() }
            let end = try parser.feed("", final: true)
            streamed += end.deltas.compactMap(\.content).joined()
            #expect(end.message.toolCalls.allSatisfy { !$0.name.isEmpty }, "\(output): \(end.message)")
            if end.message.toolCalls.isEmpty {
                #expect(end.message.content == output && streamed == output, "\(output): \(end.message), streamed \(streamed)")
            }
        }
    }

    /// `reasoning_format: none` keeps the reasoning in the content, where the model wrote it.
    @Test func reasoningStaysInlineWithFormatNone() throws {
        let text = try String(contentsOfFile: try llamaTemplateDirectory() + "/Qwen-Qwen3-0.6B.jinja", encoding: .utf8)
        let templates = try ChatTemplates(text: text, eosToken: "<|im_end|>")
        let output = "<think>\nShort.\n</think>\n\nIt is sunny."
        let apart = try templates.render(ChatConversation(messages: [ChatMessage(role: "user", content: "Weather?")], reasoningFormat: "auto"))
        let message = try ChatOutputParser(rendering: apart).feed(output, final: true).message
        #expect(message.reasoningContent.trimmingCharacters(in: .whitespacesAndNewlines) == "Short." && message.content.trimmingCharacters(in: .whitespacesAndNewlines) == "It is sunny.", "\(message)")
        let inline = try templates.render(ChatConversation(messages: [ChatMessage(role: "user", content: "Weather?")], reasoningFormat: "none"))
        let kept = try ChatOutputParser(rendering: inline).feed(output, final: true).message
        #expect(kept.reasoningContent.isEmpty && kept.content.contains("<think>") && kept.content.contains("It is sunny."), "\(kept)")
    }

    /// A template in which llama.cpp finds no tool format (Gemma 2's) gets the generic one: the
    /// tools in the system text, and the answer one JSON object, read when it is whole.
    @Test func theGenericFormatReadsOneJSONObject() throws {
        let text = try String(contentsOfFile: try llamaTemplateDirectory() + "/google-gemma-2-2b-it.jinja", encoding: .utf8)
        let templates = try ChatTemplates(text: text, bosToken: "<bos>", eosToken: "<eos>")
        let rendering = try templates.render(
            ChatConversation(messages: [ChatMessage(role: "user", content: "Weather in Paris?")], tools: [Self.weather], toolChoice: "auto"))
        #expect(rendering.prompt.contains("get_weather") && rendering.prompt.contains("tool_call"), "\(rendering.prompt)")
        #expect(rendering.grammar.contains("root ::="))
        for (output, expected) in [
            (#"{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}"#, ToolCall(id: "", name: "get_weather", arguments: #"{"city":"Paris"}"#)),
            (#"{"response": "It is sunny."}"#, nil),
        ] {
            let parser = try ChatOutputParser(rendering: rendering)
            var deltas: [ChatOutputDelta] = []
            for character in output { deltas += try parser.feed(String(character)).deltas }
            #expect(deltas.isEmpty, "nothing is read before the object is whole")
            let end = try parser.feed("", final: true)
            if let expected {
                #expect(end.message.toolCalls.map(\.name) == [expected.name] && end.message.toolCalls.map(\.arguments) == [expected.arguments], "\(end.message)")
                #expect(end.deltas.first?.id?.isEmpty == false && end.deltas.first?.name == "get_weather")
            } else {
                #expect(end.message.toolCalls.isEmpty && end.message.content == "It is sunny.", "\(end.message)")
            }
        }
    }
}
