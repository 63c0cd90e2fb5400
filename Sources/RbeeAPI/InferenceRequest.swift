import Foundation

/// A chat message; `messages` are rendered with the model's own chat template. In OpenAI's
/// shape: an assistant turn may carry `tool_calls` (its `content` then `null` when empty), a
/// `tool` message answers one call by its `tool_call_id`.
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    public var toolCalls: [ToolCall]
    public var toolCallID: String?
    public var name: String?

    public init(role: String, content: String, toolCalls: [ToolCall] = [], toolCallID: String? = nil, name: String? = nil) {
        self.role = role
        self.content = content
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
        self.name = name
    }

    enum CodingKeys: String, CodingKey {
        case role, content, name
        case toolCalls = "tool_calls"
        case toolCallID = "tool_call_id"
    }

    private enum CallKeys: String, CodingKey { case id, type, function }
    private enum FunctionKeys: String, CodingKey { case name, arguments }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        role = try container.decode(String.self, forKey: .role)
        content = try container.decodeIfPresent(String.self, forKey: .content) ?? ""
        toolCallID = try container.decodeIfPresent(String.self, forKey: .toolCallID)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        toolCalls = []
        if container.contains(.toolCalls), try !container.decodeNil(forKey: .toolCalls) {
            var calls = try container.nestedUnkeyedContainer(forKey: .toolCalls)
            while !calls.isAtEnd {
                let call = try calls.nestedContainer(keyedBy: CallKeys.self)
                let function = try call.nestedContainer(keyedBy: FunctionKeys.self, forKey: .function)
                toolCalls.append(
                    ToolCall(
                        id: try call.decodeIfPresent(String.self, forKey: .id) ?? "", name: try function.decode(String.self, forKey: .name),
                        arguments: try function.decode(String.self, forKey: .arguments)))
            }
        }
    }

    /// OpenAI's shape, as templates and workers read it.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(role, forKey: .role)
        if content.isEmpty && !toolCalls.isEmpty { try container.encodeNil(forKey: .content) } else { try container.encode(content, forKey: .content) }
        try container.encodeIfPresent(toolCallID, forKey: .toolCallID)
        try container.encodeIfPresent(name, forKey: .name)
        if !toolCalls.isEmpty {
            var calls = container.nestedUnkeyedContainer(forKey: .toolCalls)
            for call in toolCalls {
                var entry = calls.nestedContainer(keyedBy: CallKeys.self)
                try entry.encode(call.id, forKey: .id)
                try entry.encode("function", forKey: .type)
                var function = entry.nestedContainer(keyedBy: FunctionKeys.self, forKey: .function)
                try function.encode(call.name, forKey: .name)
                try function.encode(call.arguments, forKey: .arguments)
            }
        }
    }

    /// The message as a worker accepts it.
    public var json: JSONValue {
        var object: [String: JSONValue] = ["role": .string(role), "content": content.isEmpty && !toolCalls.isEmpty ? .null : .string(content)]
        if let toolCallID { object["tool_call_id"] = .string(toolCallID) }
        if let name { object["name"] = .string(name) }
        if !toolCalls.isEmpty {
            object["tool_calls"] = .array(
                toolCalls.map { call in
                    ["id": .string(call.id), "type": "function", "function": ["name": .string(call.name), "arguments": .string(call.arguments)]]
                })
        }
        return .object(object)
    }
}

/// What to generate from: raw text, or a conversation.
public enum PromptInput: Sendable, Equatable {
    case text(String)
    case messages([ChatMessage])
}

/// Sampling settings of one request. Defaults follow llama-server's.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Double = 0.7
    public var topP: Double = 0.95
    public var topK: Int = 40
    public var minP: Double = 0.05
    public var repetitionPenalty: Double = 1.0
    /// OpenAI's penalties (-2…2) on tokens by how often (`frequency`) or whether (`presence`) they
    /// appeared in the last 64 tokens, applied by llama.cpp's penalties sampler.
    public var frequencyPenalty: Double = 0
    public var presencePenalty: Double = 0
    /// Fixed seed for reproducible output; `nil` draws a random one.
    public var seed: UInt32?

    public init() {}
}

/// `POST /v1/inference` body (SPEC §3 "Worker"), validated.
public struct InferenceRequest: Sendable, Equatable {
    public static let maxTokensRange = 1...32768
    public static let maxStopSequences = 4
    public static let defaultMaxTokens = 256

    public var jobID: String?
    public var prompt: PromptInput
    public var maxTokens: Int
    public var sampling: SamplingParameters
    public var stop: [String]
    public var stream: Bool
    public var ignoreEOS: Bool
    /// With `messages`: variables handed to the chat template (for example `enable_thinking`).
    public var chatTemplateKwargs: [String: JSONValue]
    /// With `messages`: end the rendering with the opening of the assistant's turn (the default),
    /// or with the last message as it is.
    public var addGenerationPrompt: Bool
    /// Start from the prefix a slot already holds (llama-server's `cache_prompt`, on by default).
    /// Off: the prompt is prefilled from its first token, so a seeded request gives exactly the
    /// text it gives on an idle worker.
    public var cachePrompt: Bool
    /// What the output must follow (`response_format`, `json_schema` or `grammar`), if anything.
    public var constraint: OutputConstraint?
    /// With `messages`: the tools the model may call, and how.
    public var tools: ToolUse?
    /// With `messages`: reasoning apart in `reasoning` events (`auto`, the default) or inline
    /// in the answer (`none`).
    public var reasoningFormat: ReasoningFormat

    public init(
        jobID: String? = nil, prompt: PromptInput, maxTokens: Int = InferenceRequest.defaultMaxTokens,
        sampling: SamplingParameters = SamplingParameters(), stop: [String] = [], stream: Bool = true, ignoreEOS: Bool = false,
        chatTemplateKwargs: [String: JSONValue] = [:], addGenerationPrompt: Bool = true, cachePrompt: Bool = true,
        constraint: OutputConstraint? = nil, tools: ToolUse? = nil, reasoningFormat: ReasoningFormat = .auto
    ) {
        self.jobID = jobID
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stop = stop
        self.stream = stream
        self.ignoreEOS = ignoreEOS
        self.chatTemplateKwargs = chatTemplateKwargs
        self.addGenerationPrompt = addGenerationPrompt
        self.cachePrompt = cachePrompt
        self.constraint = constraint
        self.tools = tools
        self.reasoningFormat = reasoningFormat
    }

    /// Every field a worker honours; any other is refused with `UNSUPPORTED_PARAMETER`.
    public static let fields: Set<String> = [
        "job_id", "prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
        "frequency_penalty", "presence_penalty", "seed", "stop", "stream", "ignore_eos", "cache_prompt", "chat_template_kwargs",
        "add_generation_prompt", "response_format", "json_schema", "grammar", "tools", "tool_choice", "parallel_tool_calls",
        "reasoning_format",
    ]

    /// Validates a decoded JSON body, collecting every field error before failing. A field no
    /// worker honours is `UNSUPPORTED_PARAMETER`, named, before anything else is checked.
    public init(json: JSONValue) throws(RbeeError) {
        guard case .object(let body) = json else {
            throw RbeeError.invalid([.init(field: "body", message: "must be a JSON object, got \(json.typeName)")])
        }
        let unknown = body.keys.filter { !Self.fields.contains($0) }.sorted()
        if !unknown.isEmpty { throw RbeeError.unsupported(unknown) }
        var fields = FieldReader(body)

        let jobID = fields.string("job_id")
        if let jobID, !Validation.isValidID(jobID) {
            fields.fail("job_id", "must match [A-Za-z0-9._-]{1,64}")
        }

        let promptText = fields.string("prompt")
        let messages = fields.messages("messages")
        var prompt = PromptInput.text("")
        switch (promptText, messages) {
        case (let text?, nil):
            if text.isEmpty { fields.fail("prompt", "must not be empty") }
            prompt = .text(text)
        case (nil, let messages?): prompt = .messages(messages)
        case (.some, .some): fields.fail("prompt", "give either prompt or messages, not both")
        case (nil, nil):
            if !fields.hasError("prompt"), !fields.hasError("messages") {
                fields.fail("prompt", "required: give prompt (a string) or messages (an array)")
            }
        }

        let maxTokens = fields.integer("max_tokens", in: Self.maxTokensRange) ?? Self.defaultMaxTokens
        var sampling = SamplingParameters()
        sampling.temperature = fields.number("temperature", in: 0...2) ?? sampling.temperature
        sampling.topP = fields.number("top_p", in: 0...1) ?? sampling.topP
        sampling.topK = fields.integer("top_k", in: 0...1_000_000) ?? sampling.topK
        sampling.minP = fields.number("min_p", in: 0...1) ?? sampling.minP
        sampling.repetitionPenalty = fields.number("repetition_penalty", in: 0.01...10) ?? sampling.repetitionPenalty
        sampling.frequencyPenalty = fields.number("frequency_penalty", in: -2...2) ?? 0
        sampling.presencePenalty = fields.number("presence_penalty", in: -2...2) ?? 0
        sampling.seed = fields.integer("seed", in: 0...Int(UInt32.max - 1)).map { UInt32($0) }

        let stop = fields.stopSequences("stop")
        let stream = fields.bool("stream") ?? true
        let ignoreEOS = fields.bool("ignore_eos") ?? false
        let cachePrompt = fields.bool("cache_prompt") ?? true
        let kwargs = fields.object("chat_template_kwargs")
        let addGenerationPrompt = fields.bool("add_generation_prompt")
        let constraint = fields.outputConstraint()
        if let constraint, ignoreEOS {
            fields.fail("ignore_eos", "cannot be combined with \(constraint.wire.field): the output ends where the grammar completes")
        }
        let tools = fields.toolUse()
        let reasoningFormat = fields.reasoningFormat()
        if let tools, tools.choice != .none, let constraint {
            fields.fail(constraint.field, "cannot be combined with tools: the tool calls' grammar constrains the output")
        }
        if promptText != nil {
            if tools != nil { fields.fail("tools", "only with messages (a prompt is not rendered with a template)") }
            if kwargs != nil { fields.fail("chat_template_kwargs", "only with messages (a prompt is not rendered with a template)") }
            if addGenerationPrompt != nil { fields.fail("add_generation_prompt", "only with messages (a prompt is not rendered with a template)") }
        }

        if !fields.errors.isEmpty { throw RbeeError.invalid(fields.errors) }
        self.init(
            jobID: jobID, prompt: prompt, maxTokens: maxTokens, sampling: sampling, stop: stop, stream: stream,
            ignoreEOS: ignoreEOS, chatTemplateKwargs: kwargs ?? [:], addGenerationPrompt: addGenerationPrompt ?? true, cachePrompt: cachePrompt,
            constraint: constraint, tools: tools, reasoningFormat: reasoningFormat ?? .auto)
    }
}

/// Reads typed fields out of a JSON object, recording one error per bad field.
struct FieldReader {
    let body: [String: JSONValue]
    private(set) var errors: [RbeeError.FieldError] = []

    init(_ body: [String: JSONValue]) { self.body = body }

    mutating func fail(_ field: String, _ message: String) {
        errors.append(.init(field: field, message: message))
    }

    /// Whether `field` or one of its elements (`field[i]`) already has an error.
    func hasError(_ field: String) -> Bool { errors.contains { $0.field == field || $0.field.hasPrefix(field + "[") } }

    /// The value, or nil when the field is absent or JSON null.
    private func value(_ field: String) -> JSONValue? {
        guard let value = body[field], value != .null else { return nil }
        return value
    }

    mutating func string(_ field: String) -> String? {
        guard let value = value(field) else { return nil }
        guard case .string(let string) = value else {
            fail(field, "must be a string, got \(value.typeName)")
            return nil
        }
        return string
    }

    mutating func bool(_ field: String) -> Bool? {
        guard let value = value(field) else { return nil }
        guard case .bool(let flag) = value else {
            fail(field, "must be a boolean, got \(value.typeName)")
            return nil
        }
        return flag
    }

    mutating func number(_ field: String, in range: ClosedRange<Double>) -> Double? {
        guard let value = value(field) else { return nil }
        guard case .number(let number) = value, number.isFinite else {
            fail(field, "must be a number, got \(value.typeName)")
            return nil
        }
        guard range.contains(number) else {
            fail(field, "must be between \(format(range.lowerBound)) and \(format(range.upperBound)), got \(format(number))")
            return nil
        }
        return number
    }

    mutating func integer(_ field: String, in range: ClosedRange<Int>) -> Int? {
        guard let value = value(field) else { return nil }
        guard case .number(let number) = value, number.isFinite, number.rounded() == number else {
            fail(field, "must be an integer, got \(value == .null ? "null" : describe(value))")
            return nil
        }
        guard number >= Double(range.lowerBound), number <= Double(range.upperBound) else {
            fail(field, "must be between \(range.lowerBound) and \(range.upperBound), got \(format(number))")
            return nil
        }
        return Int(number)
    }

    mutating func object(_ field: String) -> [String: JSONValue]? {
        guard let value = value(field) else { return nil }
        guard case .object(let object) = value else {
            fail(field, "must be an object, got \(value.typeName)")
            return nil
        }
        return object
    }

    mutating func messages(_ field: String) -> [ChatMessage]? {
        guard let value = value(field) else { return nil }
        guard case .array(let items) = value else {
            fail(field, "must be an array of {role, content}, got \(value.typeName)")
            return nil
        }
        if items.isEmpty {
            fail(field, "must not be empty")
            return nil
        }
        var messages: [ChatMessage] = []
        for (index, item) in items.enumerated() {
            guard case .object(let message) = item, case .string(let role)? = message["role"], !role.isEmpty else {
                fail("\(field)[\(index)]", "must be an object with a string role and a content: a string or an array of text parts")
                continue
            }
            var calls: [ToolCall] = []
            if let raw = message["tool_calls"], raw != .null {
                guard role == "assistant", let parsed = Self.toolCalls(raw) else {
                    fail("\(field)[\(index)].tool_calls", "only on an assistant message: an array of {id, type: function, function: {name, arguments}}")
                    continue
                }
                calls = parsed
            }
            let content: String?
            switch message["content"] {
            case nil, .null?: content = calls.isEmpty ? nil : ""
            case let value?: content = Self.text(value)
            }
            guard let content else {
                fail("\(field)[\(index)]", "must be an object with a string role and a content: a string or an array of text parts")
                continue
            }
            var toolCallID: String?
            switch message["tool_call_id"] {
            case nil, .null?: break
            case .string(let id)?: toolCallID = id
            default:
                fail("\(field)[\(index)].tool_call_id", "must be a string")
                continue
            }
            var name: String?
            if case .string(let value)? = message["name"] { name = value }
            messages.append(ChatMessage(role: role, content: content, toolCalls: calls, toolCallID: toolCallID, name: name))
        }
        return messages.count == items.count ? messages : nil
    }

    /// OpenAI's `tool_calls` of an assistant message; `arguments` given as an object is taken as
    /// its JSON text.
    private static func toolCalls(_ value: JSONValue) -> [ToolCall]? {
        guard case .array(let items) = value else { return nil }
        var calls: [ToolCall] = []
        for item in items {
            guard case .object(let call) = item, case .object(let function)? = call["function"], case .string(let name)? = function["name"] else {
                return nil
            }
            var arguments = "{}"
            switch function["arguments"] {
            case .string(let text)?: arguments = text
            case .object?:
                let encoder = JSONEncoder()
                encoder.outputFormatting = .sortedKeys
                arguments = (try? encoder.encode(function["arguments"]!)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            case nil, .null?: break
            default: return nil
            }
            var id = ""
            if case .string(let value)? = call["id"] { id = value }
            calls.append(ToolCall(id: id, name: name, arguments: arguments))
        }
        return calls
    }

    /// A message's content: a string, or an array of `{"type": "text", "text": …}` parts, joined
    /// by newlines.
    private static func text(_ content: JSONValue) -> String? {
        switch content {
        case .string(let text): return text
        case .array(let parts):
            var texts: [String] = []
            for part in parts {
                guard case .object(let object) = part, object["type"] == .string("text"), case .string(let text)? = object["text"] else {
                    return nil
                }
                texts.append(text)
            }
            return texts.joined(separator: "\n")
        default: return nil
        }
    }

    mutating func stopSequences(_ field: String) -> [String] {
        guard let value = value(field) else { return [] }
        let strings: [String]
        switch value {
        case .string(let single): strings = [single]
        case .array(let items):
            var collected: [String] = []
            for item in items {
                guard case .string(let string) = item else {
                    fail(field, "must be a string or an array of strings")
                    return []
                }
                collected.append(string)
            }
            strings = collected
        default:
            fail(field, "must be a string or an array of strings, got \(value.typeName)")
            return []
        }
        if strings.count > InferenceRequest.maxStopSequences {
            fail(field, "at most \(InferenceRequest.maxStopSequences) stop sequences, got \(strings.count)")
            return []
        }
        if strings.contains(where: \.isEmpty) {
            fail(field, "stop sequences must not be empty")
            return []
        }
        return strings
    }

    private func describe(_ value: JSONValue) -> String {
        if case .number(let number) = value { return format(number) }
        return value.typeName
    }

    private func format(_ number: Double) -> String {
        number.rounded() == number && abs(number) < 1e15 ? String(Int64(number)) : String(number)
    }
}

extension InferenceRequest: Decodable {
    /// Decodes and validates a body in one step, through the daemons' request decoder: every field
    /// error is reported at once, as `init(json:)` does.
    public init(from decoder: any Decoder) throws {
        try self.init(json: try JSONValue(from: decoder))
    }
}

extension InferenceRequest {
    /// The body a worker accepts for this request (a proxy re-sends the validated form, never the
    /// client's raw JSON).
    public var json: JSONValue {
        var body: [String: JSONValue] = [
            "max_tokens": .number(Double(maxTokens)),
            "temperature": .number(sampling.temperature),
            "top_p": .number(sampling.topP),
            "top_k": .number(Double(sampling.topK)),
            "min_p": .number(sampling.minP),
            "repetition_penalty": .number(sampling.repetitionPenalty),
            "stream": .bool(stream),
            "ignore_eos": .bool(ignoreEOS),
        ]
        if let jobID { body["job_id"] = .string(jobID) }
        if sampling.frequencyPenalty != 0 { body["frequency_penalty"] = .number(sampling.frequencyPenalty) }
        if sampling.presencePenalty != 0 { body["presence_penalty"] = .number(sampling.presencePenalty) }
        if let seed = sampling.seed { body["seed"] = .number(Double(seed)) }
        if !stop.isEmpty { body["stop"] = .array(stop.map { .string($0) }) }
        if !cachePrompt { body["cache_prompt"] = .bool(false) }
        if let constraint { body[constraint.wire.field] = constraint.wire.value }
        switch prompt {
        case .text(let text): body["prompt"] = .string(text)
        case .messages(let messages):
            body["messages"] = .array(messages.map(\.json))
            if let tools { body.merge(tools.json) { _, new in new } }
            if reasoningFormat != .auto { body["reasoning_format"] = .string(reasoningFormat.rawValue) }
            if !chatTemplateKwargs.isEmpty { body["chat_template_kwargs"] = .object(chatTemplateKwargs) }
            if !addGenerationPrompt { body["add_generation_prompt"] = .bool(false) }
        }
        return .object(body)
    }
}
