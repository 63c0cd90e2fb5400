/// Why a generation stopped.
public enum StopReason: String, Sendable, Codable {
    case maxTokens = "max_tokens"
    case eos
    case stopSequence = "stop_sequence"
    case cancelled
}

/// Figures reported with the `end` event.
public struct GenerationStats: Sendable, Equatable, Codable {
    public var tokensOut: Int
    public var promptTokens: Int
    /// From the request's arrival at the worker to its first generated token.
    public var ttftMs: Double
    /// From the first generated token to the last.
    public var decodeMs: Double
    /// Tokens after the first divided by `decodeMs`: the steady decode rate.
    public var tokensPerSec: Double
    public var stopReason: StopReason
    /// Prompt tokens served from cells the slot already held (prompt reuse), not evaluated again.
    public var cachedTokens: Int
    /// Generated tokens that were reasoning (`reasoning` events), not answer.
    public var reasoningTokens: Int
    /// Tool calls the output made (`tool_call` events; `tool_call_count`): OpenAI's
    /// `finish_reason: tool_calls`.
    public var toolCalls: Int

    public init(
        tokensOut: Int, promptTokens: Int, ttftMs: Double, decodeMs: Double, tokensPerSec: Double, stopReason: StopReason, cachedTokens: Int = 0,
        reasoningTokens: Int = 0, toolCalls: Int = 0
    ) {
        self.tokensOut = tokensOut
        self.promptTokens = promptTokens
        self.ttftMs = ttftMs
        self.decodeMs = decodeMs
        self.tokensPerSec = tokensPerSec
        self.stopReason = stopReason
        self.cachedTokens = cachedTokens
        self.reasoningTokens = reasoningTokens
        self.toolCalls = toolCalls
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        tokensOut = try container.decode(Int.self, forKey: .tokensOut)
        promptTokens = try container.decode(Int.self, forKey: .promptTokens)
        ttftMs = try container.decode(Double.self, forKey: .ttftMs)
        decodeMs = try container.decode(Double.self, forKey: .decodeMs)
        tokensPerSec = try container.decode(Double.self, forKey: .tokensPerSec)
        stopReason = try container.decode(StopReason.self, forKey: .stopReason)
        cachedTokens = try container.decodeIfPresent(Int.self, forKey: .cachedTokens) ?? 0
        reasoningTokens = try container.decodeIfPresent(Int.self, forKey: .reasoningTokens) ?? 0
        toolCalls = try container.decodeIfPresent(Int.self, forKey: .toolCalls) ?? 0
    }

    /// `reasoning_tokens` and `tool_call_count` only where there were some.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tokensOut, forKey: .tokensOut)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(ttftMs, forKey: .ttftMs)
        try container.encode(decodeMs, forKey: .decodeMs)
        try container.encode(tokensPerSec, forKey: .tokensPerSec)
        try container.encode(stopReason, forKey: .stopReason)
        try container.encode(cachedTokens, forKey: .cachedTokens)
        if reasoningTokens > 0 { try container.encode(reasoningTokens, forKey: .reasoningTokens) }
        if toolCalls > 0 { try container.encode(toolCalls, forKey: .toolCalls) }
    }

    enum CodingKeys: String, CodingKey {
        case tokensOut = "tokens_out"
        case promptTokens = "prompt_tokens"
        case ttftMs = "ttft_ms"
        case decodeMs = "decode_ms"
        case tokensPerSec = "tokens_per_sec"
        case stopReason = "stop_reason"
        case cachedTokens = "cached_tokens"
        case reasoningTokens = "reasoning_tokens"
        case toolCalls = "tool_call_count"
    }
}

/// One event of an inference stream: `started`, then `token`, `reasoning` and `tool_call` pieces
/// in the order the output makes them, then exactly one `end` or `error`.
public enum InferenceEvent: Sendable, Equatable {
    case started(jobID: String, model: String, queueMs: Double)
    /// A piece of the answer.
    case token(text: String, index: Int)
    /// A piece of the model's reasoning (a thinking template's output, kept apart from the answer).
    case reasoning(text: String, index: Int)
    /// A piece of a tool call.
    case toolCall(ToolCallDelta)
    case end(GenerationStats)
    case error(RbeeError)

    /// `end` and `error` close a stream; nothing but `[DONE]` follows them.
    public var isTerminal: Bool {
        switch self {
        case .end, .error: true
        case .started, .token, .reasoning, .toolCall: false
        }
    }
}

extension InferenceEvent: Codable {
    private enum Keys: String, CodingKey {
        case type, t, i, model
        case jobID = "job_id"
        case queueMs = "queue_ms"
    }


    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        switch try container.decode(String.self, forKey: .type) {
        case "started":
            self = .started(
                jobID: try container.decode(String.self, forKey: .jobID),
                model: try container.decode(String.self, forKey: .model),
                queueMs: try container.decode(Double.self, forKey: .queueMs))
        case "token":
            self = .token(text: try container.decode(String.self, forKey: .t), index: try container.decode(Int.self, forKey: .i))
        case "reasoning":
            self = .reasoning(text: try container.decode(String.self, forKey: .t), index: try container.decode(Int.self, forKey: .i))
        case "tool_call":
            self = .toolCall(try ToolCallDelta(from: decoder))
        case "end":
            self = .end(try GenerationStats(from: decoder))
        case "error":
            self = .error(try RbeeError(from: decoder))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .type, in: container, debugDescription: "unknown event type \(other)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        switch self {
        case .started(let jobID, let model, let queueMs):
            try container.encode("started", forKey: .type)
            try container.encode(jobID, forKey: .jobID)
            try container.encode(model, forKey: .model)
            try container.encode(queueMs, forKey: .queueMs)
        case .token(let text, let index):
            try container.encode("token", forKey: .type)
            try container.encode(text, forKey: .t)
            try container.encode(index, forKey: .i)
        case .reasoning(let text, let index):
            try container.encode("reasoning", forKey: .type)
            try container.encode(text, forKey: .t)
            try container.encode(index, forKey: .i)
        case .toolCall(let delta):
            try container.encode("tool_call", forKey: .type)
            try delta.encode(to: encoder)
        case .end(let stats):
            try container.encode("end", forKey: .type)
            try stats.encode(to: encoder)
        case .error(let error):
            try container.encode("error", forKey: .type)
            try error.encode(to: encoder)
        }
    }
}

/// The `stream:false` answer of `POST /v1/inference`.
public struct InferenceResult: Sendable, Equatable, Codable {
    public var jobID: String
    public var model: String
    public var text: String
    /// The reasoning, where a thinking template's output had some (`reasoning_content`).
    public var reasoning: String
    public var toolCalls: [ToolCall]
    public var stats: GenerationStats

    public init(jobID: String, model: String, text: String, reasoning: String = "", toolCalls: [ToolCall] = [], stats: GenerationStats) {
        self.jobID = jobID
        self.model = model
        self.text = text
        self.reasoning = reasoning
        self.toolCalls = toolCalls
        self.stats = stats
    }

    enum CodingKeys: String, CodingKey {
        case jobID = "job_id"
        case model, text
        case reasoning = "reasoning_content"
        case toolCalls = "tool_calls"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        jobID = try container.decode(String.self, forKey: .jobID)
        model = try container.decode(String.self, forKey: .model)
        text = try container.decode(String.self, forKey: .text)
        reasoning = try container.decodeIfPresent(String.self, forKey: .reasoning) ?? ""
        toolCalls = try container.decodeIfPresent([ToolCall].self, forKey: .toolCalls) ?? []
        stats = try GenerationStats(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(jobID, forKey: .jobID)
        try container.encode(model, forKey: .model)
        try container.encode(text, forKey: .text)
        if !reasoning.isEmpty { try container.encode(reasoning, forKey: .reasoning) }
        if !toolCalls.isEmpty { try container.encode(toolCalls, forKey: .toolCalls) }
        try stats.encode(to: encoder)
    }
}
