/// Where a thinking template's reasoning goes: apart (`reasoning` events, OpenAI's
/// `reasoning_content`), or left inline in the answer.
public enum ReasoningFormat: String, Sendable, Equatable {
    case auto
    case none
}

/// The tools a request offers the model (OpenAI's `tools`, `tool_choice`, `parallel_tool_calls`).
public struct ToolUse: Sendable, Equatable {
    /// OpenAI's `tool_choice`.
    public enum Choice: Sendable, Equatable {
        /// The model decides.
        case auto
        /// No call: the tools are shown to the template, the output is text.
        case none
        /// At least one call, enforced by a grammar.
        case required
        /// A call of this function, enforced by a grammar.
        case function(String)
    }

    /// The tools, each `{"type": "function", "function": {"name", "description"?, "parameters"?}}`.
    public var tools: [JSONValue]
    public var choice: Choice
    /// More than one call in an answer (default false, as llama-server).
    public var parallelCalls: Bool

    public init(tools: [JSONValue], choice: Choice = .auto, parallelCalls: Bool = false) {
        self.tools = tools
        self.choice = choice
        self.parallelCalls = parallelCalls
    }

    /// The tools' names, in order.
    public var names: [String] {
        tools.compactMap { tool in
            guard case .object(let object) = tool, case .object(let function)? = object["function"], case .string(let name)? = function["name"] else {
                return nil
            }
            return name
        }
    }

    /// What llama.cpp's template rendering is given: a named function is the only tool, required.
    public var rendered: (tools: [JSONValue], choice: String) {
        switch choice {
        case .auto: (tools, "auto")
        case .none: (tools, "none")
        case .required: (tools, "required")
        case .function(let name): (tools.filter { ToolUse(tools: [$0]).names == [name] }, "required")
        }
    }

    /// The fields a worker accepts for this.
    var json: [String: JSONValue] {
        let choice: JSONValue =
            switch self.choice {
            case .auto: "auto"
            case .none: "none"
            case .required: "required"
            case .function(let name): ["type": "function", "function": ["name": .string(name)]]
            }
        return ["tools": .array(tools), "tool_choice": choice, "parallel_tool_calls": .bool(parallelCalls)]
    }
}

extension FieldReader {
    /// `tools`, `tool_choice` and `parallel_tool_calls`; nil without tools (an empty array is none).
    mutating func toolUse() -> ToolUse? {
        let parallel = bool("parallel_tool_calls") ?? false
        guard let raw = body["tools"], raw != .null else {
            if let choice = body["tool_choice"], choice != .null, choice != "none", choice != "auto" {
                fail("tool_choice", "needs tools to choose from")
            }
            return nil
        }
        guard case .array(let items) = raw else {
            fail("tools", "must be an array of {\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}, got \(raw.typeName)")
            return nil
        }
        if items.isEmpty { return nil }
        var names = Set<String>()
        let before = errors.count
        for (index, item) in items.enumerated() {
            let path = "tools[\(index)]"
            guard case .object(let tool) = item, tool["type"] == "function", case .object(let function)? = tool["function"] else {
                fail(path, "must be {\"type\": \"function\", \"function\": {…}}")
                continue
            }
            guard case .string(let name)? = function["name"], Self.isToolName(name) else {
                fail(path + ".function.name", "required: 1 to 64 of a-z, A-Z, 0-9, _ and -")
                continue
            }
            if !names.insert(name).inserted { fail(path + ".function.name", "\(name) is given twice") }
            if let description = function["description"], description != .null, description.typeName != "string" {
                fail(path + ".function.description", "must be a string")
            }
            if let parameters = function["parameters"], parameters != .null {
                _ = schema(parameters, at: path + ".function.parameters")
            }
        }
        var choice = ToolUse.Choice.auto
        switch body["tool_choice"] {
        case nil, .null?, .string("auto")?: break
        case .string("none")?: choice = .none
        case .string("required")?: choice = .required
        case .object(let object)?:
            if object["type"] == "function", case .object(let function)? = object["function"], case .string(let name)? = function["name"] {
                if names.contains(name) { choice = .function(name) } else { fail("tool_choice", "names \(name), which is not among the tools") }
            } else {
                fail("tool_choice", "must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\"}}")
            }
        default: fail("tool_choice", "must be auto, none, required or {\"type\": \"function\", \"function\": {\"name\"}}")
        }
        guard errors.count == before else { return nil }
        return ToolUse(tools: items, choice: choice, parallelCalls: parallel)
    }

    mutating func reasoningFormat() -> ReasoningFormat? {
        guard let text = string("reasoning_format") else { return nil }
        guard let format = ReasoningFormat(rawValue: text) else {
            fail("reasoning_format", "must be auto (reasoning apart) or none (inline)")
            return nil
        }
        return format
    }

    private static func isToolName(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            (48...57).contains(byte) || (65...90).contains(byte) || (97...122).contains(byte) || byte == 95 || byte == 45
        }
    }
}
