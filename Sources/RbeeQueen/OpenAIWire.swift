import Foundation
import RbeeAPI

/// OpenAI's wire types as the queen writes them: whole answers, stream chunks and the error body.
/// Absent values OpenAI spells as `null` (`finish_reason` of a chunk under way, `logprobs`) are
/// written as `null`, as OpenAI's clients and test suites expect.
enum OpenAIWire {
    struct Usage: Encodable, Sendable, Equatable {
        var promptTokens: Int
        var completionTokens: Int
        /// Prompt tokens the worker's slot already held (`prompt_tokens_details.cached_tokens`).
        var cachedTokens: Int
        /// Completion tokens that were reasoning (`completion_tokens_details.reasoning_tokens`).
        var reasoningTokens: Int
        var totalTokens: Int { promptTokens + completionTokens }

        init(_ stats: GenerationStats) {
            promptTokens = stats.promptTokens
            completionTokens = stats.tokensOut
            cachedTokens = stats.cachedTokens
            reasoningTokens = stats.reasoningTokens
        }

        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens"
            case completionTokens = "completion_tokens"
            case totalTokens = "total_tokens"
            case promptTokensDetails = "prompt_tokens_details"
            case completionTokensDetails = "completion_tokens_details"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(promptTokens, forKey: .promptTokens)
            try container.encode(completionTokens, forKey: .completionTokens)
            try container.encode(totalTokens, forKey: .totalTokens)
            try container.encode(["cached_tokens": cachedTokens], forKey: .promptTokensDetails)
            try container.encode(["reasoning_tokens": reasoningTokens], forKey: .completionTokensDetails)
        }
    }

    /// A tool call as OpenAI writes it: `{id, type: "function", function: {name, arguments}}`;
    /// in a stream chunk, `index` first and the id, type and name with a call's first piece only.
    struct ToolCallEntry: Encodable, Sendable {
        var index: Int?
        var id: String?
        var name: String?
        var arguments: String

        init(_ call: ToolCall) {
            id = call.id
            name = call.name
            arguments = call.arguments
        }

        init(_ delta: ToolCallDelta) {
            index = delta.index
            id = delta.id
            name = delta.name
            arguments = delta.arguments
        }

        enum CodingKeys: String, CodingKey { case index, id, type, function }
        enum FunctionKeys: String, CodingKey { case name, arguments }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encodeIfPresent(index, forKey: .index)
            try container.encodeIfPresent(id, forKey: .id)
            if id != nil { try container.encode("function", forKey: .type) }
            var function = container.nestedContainer(keyedBy: FunctionKeys.self, forKey: .function)
            try function.encodeIfPresent(name, forKey: .name)
            try function.encode(arguments, forKey: .arguments)
        }
    }

    /// `chat.completion`, `text_completion` and their `…chunk` forms share this frame.
    struct Completion<Choice: Encodable & Sendable>: Encodable, Sendable {
        var id: String
        var object: String
        var created: Int
        var model: String
        var choices: [Choice]
        var usage: Usage?
    }

    struct Message: Encodable, Sendable {
        var role = "assistant"
        /// `null` when the answer is tool calls alone, as OpenAI writes it.
        var content: String?
        var reasoningContent: String?
        var toolCalls: [ToolCall] = []

        enum CodingKeys: String, CodingKey {
            case role, content
            case reasoningContent = "reasoning_content"
            case toolCalls = "tool_calls"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(role, forKey: .role)
            try container.encode(content, forKey: .content)
            try container.encodeIfPresent(reasoningContent, forKey: .reasoningContent)
            if !toolCalls.isEmpty { try container.encode(toolCalls.map(ToolCallEntry.init), forKey: .toolCalls) }
        }
    }

    /// A choice of a whole chat completion.
    struct ChatChoice: Encodable, Sendable {
        var index = 0
        var message: Message
        var finishReason: String

        enum CodingKeys: String, CodingKey {
            case index, message, logprobs
            case finishReason = "finish_reason"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            try container.encode(message, forKey: .message)
            try container.encode(finishReason, forKey: .finishReason)
            try container.encodeNil(forKey: .logprobs)
        }
    }

    /// A choice of a chat completion chunk: a piece of the answer, or its end.
    struct ChatDelta: Encodable, Sendable {
        var index = 0
        var role: String?
        var content: String?
        var reasoningContent: String?
        var toolCall: ToolCallDelta?
        var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case index, delta
            case finishReason = "finish_reason"
        }
        enum DeltaKeys: String, CodingKey {
            case role, content
            case reasoningContent = "reasoning_content"
            case toolCalls = "tool_calls"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            var delta = container.nestedContainer(keyedBy: DeltaKeys.self, forKey: .delta)
            try delta.encodeIfPresent(role, forKey: .role)
            try delta.encodeIfPresent(content, forKey: .content)
            try delta.encodeIfPresent(reasoningContent, forKey: .reasoningContent)
            if let toolCall { try delta.encode([ToolCallEntry(toolCall)], forKey: .toolCalls) }
            try container.encode(finishReason, forKey: .finishReason)
        }
    }

    /// A choice of a text completion, whole or a chunk of one.
    struct TextChoice: Encodable, Sendable {
        var index = 0
        var text: String
        var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case index, text, logprobs
            case finishReason = "finish_reason"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(index, forKey: .index)
            try container.encode(text, forKey: .text)
            try container.encodeNil(forKey: .logprobs)
            try container.encode(finishReason, forKey: .finishReason)
        }
    }

    /// OpenAI's `finish_reason`: `tool_calls` when the answer ended after calling tools.
    static func finishReason(_ stats: GenerationStats) -> String {
        switch stats.stopReason {
        case .maxTokens: "length"
        case .eos, .stopSequence: stats.toolCalls > 0 ? "tool_calls" : "stop"
        case .cancelled: "stop"
        }
    }

    /// Encodes `value` as JSON. A value that cannot be encoded becomes OpenAI's error body for an
    /// internal error, never `{}`.
    static func json(_ value: some Encodable, encoder: JSONEncoder = encoder()) -> Data {
        if let data = try? encoder.encode(value) { return data }
        let failure = ErrorBody(RbeeError(.internalError, "cannot encode the answer"))
        return (try? encoder.encode(failure)) ?? Data(#"{"error":{"code":"internal","message":"cannot encode the answer","type":"server_error"}}"#.utf8)
    }

    /// One `data:` frame of an OpenAI stream.
    static func frame(_ value: some Encodable, encoder: JSONEncoder) -> String {
        "data: " + String(decoding: json(value, encoder: encoder), as: UTF8.self) + "\n\n"
    }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return encoder
    }

    /// OpenAI's error body: `{"error":{"message","type","param","code"}}`.
    struct ErrorBody: Encodable, Sendable {
        struct Body: Encodable, Sendable {
            var message: String
            var type: String
            var param: String?
            var code: String

            enum CodingKeys: String, CodingKey { case message, type, param, code }

            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(message, forKey: .message)
                try container.encode(type, forKey: .type)
                try container.encode(param, forKey: .param)
                try container.encode(code, forKey: .code)
            }
        }

        var error: Body

        /// The first field error, if any, is OpenAI's `param`.
        init(_ error: RbeeError) {
            let type: String =
                switch error.httpStatus {
                case 400, 413: "invalid_request_error"
                case 401: "authentication_error"
                case 404: "not_found_error"
                case 429: "rate_limit_error"
                default: "server_error"
                }
            let code = error.code == .modelNotFound ? "model_not_found" : error.code.rawValue.lowercased()
            self.error = Body(message: error.message, type: type, param: error.fieldErrors.first?.field, code: code)
        }
    }
}
