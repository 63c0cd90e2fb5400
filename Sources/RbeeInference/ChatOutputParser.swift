internal import CRbeeChat
import Foundation
import RbeeAPI

/// Reads one generation's output in the format its chat template rendering chose: reasoning,
/// content and tool calls, with llama.cpp's `common_chat_parse` (as llama-server does: all the
/// text again on each new piece, partial until the end), and says what is new each time.
///
/// Thread-confined: one job's parser is used by whoever runs that job, one call at a time.
final class ChatOutputParser {
    private let pointer: OpaquePointer

    /// A parser for the output of `rendering`. Throws for a rendering without a format (a
    /// built-in template's).
    init(rendering: ChatRendering) throws(RbeeError) {
        guard !rendering.outputFormat.isEmpty else { throw RbeeError(.internalError, "the rendering has no output format") }
        var error: UnsafeMutablePointer<CChar>?
        guard let pointer = rbee_chat_parser_init(rendering.outputFormat, &error) else {
            throw RbeeError(.internalError, "cannot read the chat format: " + takeChatString(error))
        }
        self.pointer = pointer
    }

    deinit { rbee_chat_parser_free(pointer) }

    /// Adds generated text (`final`: the last of it) and returns what is new.
    func feed(_ text: String, final: Bool = false) throws(RbeeError) -> ChatOutputUpdate {
        var error: UnsafeMutablePointer<CChar>?
        let result = text.utf8CString.withUnsafeBufferPointer { buffer in
            rbee_chat_parser_feed(pointer, buffer.baseAddress, buffer.count - 1, final, &error)
        }
        guard let result else { throw RbeeError(.internalError, "reading the output: " + takeChatString(error)) }
        let json = takeChatString(result)
        do { return try JSONDecoder().decode(ChatOutputUpdate.self, from: Data(json.utf8)) } catch {
            throw RbeeError(.internalError, "reading the parser's answer: \(error)")
        }
    }
}

/// What one piece of output added, and the whole message read so far.
struct ChatOutputUpdate: Decodable, Equatable {
    var deltas: [ChatOutputDelta]
    var message: ChatOutputMessage
}

/// A piece of reasoning, of content, or of a tool call (its id and name in its first piece only).
struct ChatOutputDelta: Decodable, Equatable {
    var content: String?
    var reasoningContent: String?
    var toolCallIndex: Int?
    var id: String?
    var name: String?
    var arguments: String?

    enum CodingKeys: String, CodingKey {
        case content, id, name, arguments
        case reasoningContent = "reasoning_content"
        case toolCallIndex = "tool_call_index"
    }
}

/// An assistant message as the parser reads the output.
struct ChatOutputMessage: Decodable, Equatable {
    var content: String
    var reasoningContent: String
    var toolCalls: [ToolCall]

    enum CodingKeys: String, CodingKey {
        case content
        case reasoningContent = "reasoning_content"
        case toolCalls = "tool_calls"
    }
}
