/// A tool call the model made: OpenAI's `{id, type: "function", function: {name, arguments}}`,
/// with `arguments` the JSON text the model wrote.
public struct ToolCall: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    public var arguments: String

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// A piece of a tool call as it streams: `index` says which call; its `id` and `name` come with
/// its first piece only, then `arguments` in pieces.
public struct ToolCallDelta: Sendable, Equatable, Codable {
    public var index: Int
    public var id: String?
    public var name: String?
    public var arguments: String

    public init(index: Int, id: String? = nil, name: String? = nil, arguments: String) {
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

extension [ToolCall] {
    /// The calls a stream's deltas make, in order of their index.
    public mutating func apply(_ delta: ToolCallDelta) {
        while count <= delta.index { append(ToolCall(id: "", name: "", arguments: "")) }
        if let id = delta.id { self[delta.index].id = id }
        if let name = delta.name { self[delta.index].name = name }
        self[delta.index].arguments += delta.arguments
    }
}
