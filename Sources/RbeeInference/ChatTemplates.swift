internal import CRbeeChat
import Foundation
import RbeeAPI
import Synchronization

/// A model's chat templates, rendered by llama.cpp's common library (its Jinja engine, the template
/// fixes llama.cpp applies, its capability detection) through the `CRbeeChat` C API.
///
/// Parsing happens once, in `init`; rendering reads the parsed templates under a lock, so one
/// value serves every request of a worker.
public final class ChatTemplates: Sendable {
    /// The C object. `@unchecked Sendable`: it lives only inside `handle`'s Mutex, so it is used
    /// under that lock alone, and it is freed once, by this value's `deinit`.
    private struct Handle: ~Copyable, @unchecked Sendable {
        let pointer: OpaquePointer
        deinit { rbee_chat_templates_free(pointer) }
    }

    private let handle: Mutex<Handle>

    /// The templates of template text (a `.jinja` file's content); `bosToken`/`eosToken` are what
    /// the template sees as `bos_token` and `eos_token`.
    public convenience init(text: String, bosToken: String = "", eosToken: String = "") throws(RbeeError) {
        try self.init(model: nil, text: text, bosToken: bosToken, eosToken: eosToken)
    }

    /// The templates of a loaded model (its GGUF's template), or `text` in their place.
    init(model: OpaquePointer?, text: String?, bosToken: String = "", eosToken: String = "") throws(RbeeError) {
        var error: UnsafeMutablePointer<CChar>?
        guard let pointer = rbee_chat_templates_init(model, text, bosToken, eosToken, &error) else {
            throw RbeeError(.invalidRequest, "the chat template does not parse: " + Self.take(error))
        }
        handle = Mutex(Handle(pointer: pointer))
    }

    /// Renders `conversation` into the prompt the model sees.
    public func render(_ conversation: ChatConversation) throws(RbeeError) -> ChatRendering {
        let request: Data
        do { request = try JSONEncoder().encode(conversation) } catch { throw RbeeError(.internalError, "encoding a conversation: \(error)") }
        let json = String(decoding: request, as: UTF8.self)
        let text: String
        let outcome = handle.withLock { handle in Self.call { error in rbee_chat_render(handle.pointer, json, &error) } }
        switch outcome {
        case .success(let result): text = result
        case .failure(let message): throw RbeeError(.invalidRequest, "the chat template refused the conversation: " + message.text)
        }
        do {
            var rendering = try JSONDecoder().decode(ChatRendering.self, from: Data(text.utf8))
            rendering.outputFormat = text
            return rendering
        } catch {
            throw RbeeError(.internalError, "reading a rendering: \(error)")
        }
    }

    /// What the templates support, from llama.cpp's detection.
    public func capabilities() throws(RbeeError) -> ChatTemplateCapabilities {
        let text: String
        let outcome = handle.withLock { handle in Self.call { error in rbee_chat_capabilities(handle.pointer, &error) } }
        switch outcome {
        case .success(let result): text = result
        case .failure(let message): throw RbeeError(.internalError, "reading the chat template's capabilities: " + message.text)
        }
        do { return try JSONDecoder().decode(ChatTemplateCapabilities.self, from: Data(text.utf8)) } catch {
            throw RbeeError(.internalError, "reading the chat template's capabilities: \(error)")
        }
    }

    private struct Message: Error { var text: String }

    /// One call of the C API: its string result, or its error message; both freed.
    private static func call(_ body: (inout UnsafeMutablePointer<CChar>?) -> UnsafeMutablePointer<CChar>?) -> Result<String, Message> {
        var error: UnsafeMutablePointer<CChar>?
        guard let result = body(&error) else { return .failure(Message(text: take(error))) }
        return .success(take(result))
    }

    private static func take(_ string: UnsafeMutablePointer<CChar>?) -> String { takeChatString(string) }
}

/// A string the `CRbeeChat` API returned (a result or an error message), freed.
func takeChatString(_ string: UnsafeMutablePointer<CChar>?) -> String {
    guard let string else { return "unknown error" }
    defer { rbee_chat_string_free(string) }
    return String(cString: string)
}

/// What a chat template renders: the conversation and how to end it.
public struct ChatConversation: Sendable, Encodable {
    public var messages: [ChatMessage]
    /// End with the opening of the assistant's turn (true), or with the last message as it is.
    public var addGenerationPrompt: Bool
    /// Extra variables handed to the template, for example `enable_thinking`.
    public var chatTemplateKwargs: [String: JSONValue]
    /// OpenAI's `tools` (an array of `{"type": "function", "function": {…}}`), if any.
    public var tools: JSONValue?
    /// `auto`, `none` or `required`.
    public var toolChoice: String?
    public var parallelToolCalls: Bool?
    /// How reasoning is read from the output: `auto` (apart, in `reasoning_content`) or `none`
    /// (inline in the content).
    public var reasoningFormat: String?

    public init(
        messages: [ChatMessage], addGenerationPrompt: Bool = true, chatTemplateKwargs: [String: JSONValue] = [:], tools: JSONValue? = nil,
        toolChoice: String? = nil, parallelToolCalls: Bool? = nil, reasoningFormat: String? = nil
    ) {
        self.messages = messages
        self.addGenerationPrompt = addGenerationPrompt
        self.chatTemplateKwargs = chatTemplateKwargs
        self.tools = tools
        self.toolChoice = toolChoice
        self.parallelToolCalls = parallelToolCalls
        self.reasoningFormat = reasoningFormat
    }

    enum CodingKeys: String, CodingKey {
        case messages, tools
        case addGenerationPrompt = "add_generation_prompt"
        case chatTemplateKwargs = "chat_template_kwargs"
        case toolChoice = "tool_choice"
        case parallelToolCalls = "parallel_tool_calls"
        case reasoningFormat = "reasoning_format"
    }
}

/// A rendered conversation.
public struct ChatRendering: Sendable, Decodable, Equatable {
    /// The text the model sees (without the leading BOS a model's tokenizer adds itself).
    public var prompt: String
    /// Stop strings the template's format implies, beyond the model's end-of-generation tokens.
    public var additionalStops: [String]
    /// The grammar that constrains the output to the format's tool calls (llama.cpp's, from the
    /// tools and `tool_choice`), empty when there is none.
    public var grammar: String
    /// Whether the template has a thinking mode whose reasoning can be read apart.
    public var supportsThinking: Bool
    /// The format's tool-call markers, to be detokenized as text.
    public var preservedTokens: [String]
    /// The rendering as llama.cpp described it (its output format, parser, grammar triggers), for
    /// `ChatOutputParser`; empty for a built-in template's rendering.
    public var outputFormat: String = ""

    public init(prompt: String, additionalStops: [String], grammar: String = "") {
        self.prompt = prompt
        self.additionalStops = additionalStops
        self.grammar = grammar
        self.supportsThinking = false
        self.preservedTokens = []
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try container.decode(String.self, forKey: .prompt)
        additionalStops = try container.decode([String].self, forKey: .additionalStops)
        grammar = try container.decodeIfPresent(String.self, forKey: .grammar) ?? ""
        supportsThinking = try container.decodeIfPresent(Bool.self, forKey: .supportsThinking) ?? false
        preservedTokens = try container.decodeIfPresent([String].self, forKey: .preservedTokens) ?? []
    }

    enum CodingKeys: String, CodingKey {
        case prompt, grammar
        case additionalStops = "additional_stops"
        case supportsThinking = "supports_thinking"
        case preservedTokens = "preserved_tokens"
    }
}

/// What a chat template supports, as llama.cpp detects it.
public struct ChatTemplateCapabilities: Sendable, Decodable, Equatable {
    /// False when the model had no template and llama.cpp fell back to ChatML.
    public var explicit: Bool
    /// llama.cpp's capability flags (`supports_tools`, `supports_system_role`, …).
    public var capabilities: [String: Bool]
    public var supportsThinking: Bool

    public var supportsTools: Bool { capabilities["supports_tools"] ?? false }

    enum CodingKeys: String, CodingKey {
        case explicit, capabilities
        case supportsThinking = "supports_thinking"
    }
}
