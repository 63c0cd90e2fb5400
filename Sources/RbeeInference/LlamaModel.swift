import Foundation
internal import CLlama
import RbeeAPI
import RbeeGGUF

/// A loaded GGUF model.
///
/// `@unchecked Sendable`: after loading, the `llama_model` is only read. Tokenizing, detokenizing
/// and template rendering read the vocabulary and never mutate it (llama-server calls them from
/// its HTTP threads too), and the pointer is freed only in `deinit`, when no one holds the model.
public final class LlamaModel: @unchecked Sendable {
    let pointer: OpaquePointer
    let vocab: OpaquePointer
    /// Facts from the file header, read before llama.cpp saw the file.
    public let file: GGUFFile
    public let path: String
    public let layerCount: Int
    public let trainedContextLength: Int
    /// Where the chat template comes from, and what it supports.
    public let chatTemplate: ChatTemplateInfo
    /// The Jinja templates (the file's, or `chatTemplateFile`'s), rendered by llama.cpp's common
    /// library; nil for a file without a template, which gets llama.cpp's built-in template
    /// (`chatTemplate.name`) instead.
    let templates: ChatTemplates?

    /// Loads the model at `path`. `progress` gets the fraction loaded (0…1) and returns false to
    /// abort the load. A missing, corrupt or non-GGUF file throws `MODEL_LOAD_FAILED`.
    /// `repackWeights` lets llama.cpp re-lay weights for its CPU gemm kernels (see
    /// `EngineConfiguration.repackWeights`).
    /// `chatTemplateFile`, when given, replaces the file's chat template; one that cannot be read or
    /// does not parse fails the load with `MODEL_LOAD_FAILED` naming it.
    public static func load(
        path: String, gpuLayers: Int = 0, repackWeights: Bool = false, chatTemplateFile: String? = nil,
        progress: @escaping (Double) -> Bool = { _ in true }
    ) throws(RbeeError)
        -> LlamaModel
    {
        let file: GGUFFile
        do {
            file = try GGUFFile(path: path)
        } catch {
            throw RbeeError(.modelLoadFailed, "cannot load model \(path): \(error.message)", details: ["path": .string(path)])
        }
        LlamaBackend.ensureInitialized()
        let box = ProgressBox(progress)
        var params = llama_model_default_params()
        params.n_gpu_layers = Int32(gpuLayers)
        params.use_extra_bufts = repackWeights
        params.progress_callback = { fraction, userData in
            guard let userData else { return true }
            return Unmanaged<ProgressBox>.fromOpaque(userData).takeUnretainedValue().report(Double(fraction))
        }
        params.progress_callback_user_data = Unmanaged.passUnretained(box).toOpaque()
        let pointer = withExtendedLifetime(box) { llama_model_load_from_file(path, params) }
        guard let pointer else {
            let reason = box.aborted ? "loading was aborted" : "llama.cpp could not load it (see the log for its reason)"
            throw RbeeError(.modelLoadFailed, "cannot load model \(path): \(reason)", details: ["path": .string(path)])
        }
        let templates: ChatTemplates?
        let info: ChatTemplateInfo
        do throws(RbeeError) {
            (templates, info) = try chatTemplates(of: pointer, file: file, templateFile: chatTemplateFile)
        } catch {
            llama_model_free(pointer)
            throw error
        }
        return LlamaModel(pointer: pointer, file: file, path: path, templates: templates, chatTemplate: info)
    }

    /// The model's Jinja templates and where they come from: `chatTemplateFile`, else the GGUF's
    /// own; a file without one (this Gemma 3 build, for one) gets none here and llama.cpp's
    /// built-in template for its architecture in `renderChat`, as before there were templates.
    private static func chatTemplates(of pointer: OpaquePointer, file: GGUFFile, templateFile: String?) throws(RbeeError)
        -> (ChatTemplates?, ChatTemplateInfo)
    {
        let source: ChatTemplateInfo.Source
        let text: String?
        if let templateFile {
            do {
                text = try String(contentsOfFile: templateFile, encoding: .utf8)
            } catch {
                throw RbeeError(
                    .modelLoadFailed, "cannot read the chat template file \(templateFile): \(error.localizedDescription)",
                    details: ["chat_template_file": .string(templateFile)])
            }
            source = .file
        } else if llama_model_chat_template(pointer, nil) != nil {
            text = nil
            source = .gguf
        } else {
            return (nil, ChatTemplateInfo(source: .builtin, name: Self.builtinTemplate(architecture: file.architecture)))
        }
        do {
            let templates = try ChatTemplates(model: pointer, text: text)
            let capabilities = try templates.capabilities()
            return (
                templates,
                ChatTemplateInfo(source: source, supportsTools: capabilities.supportsTools, supportsThinking: capabilities.supportsThinking)
            )
        } catch {
            let origin = templateFile.map { "the chat template file \($0)" } ?? "the model's chat template"
            throw RbeeError(
                .modelLoadFailed, "cannot use \(origin): \(error.message)",
                details: templateFile.map { ["chat_template_file": .string($0)] } ?? [:])
        }
    }

    private init(pointer: OpaquePointer, file: GGUFFile, path: String, templates: ChatTemplates?, chatTemplate: ChatTemplateInfo) {
        self.pointer = pointer
        self.vocab = llama_model_get_vocab(pointer)
        self.file = file
        self.path = path
        self.layerCount = Int(llama_model_n_layer(pointer))
        self.trainedContextLength = Int(llama_model_n_ctx_train(pointer))
        self.templates = templates
        self.chatTemplate = chatTemplate
    }

    /// llama.cpp names a built-in template by family; `chatml` is the common default.
    static func builtinTemplate(architecture: String?) -> String {
        guard let architecture else { return "chatml" }
        if architecture.hasPrefix("gemma") { return "gemma" }
        if architecture.hasPrefix("phi3") { return "phi3" }
        if architecture == "llama" { return "llama3" }
        return "chatml"
    }

    deinit { llama_model_free(pointer) }

    /// Bytes of weights in memory.
    public var sizeBytes: Int { Int(llama_model_size(pointer)) }

    /// The model's description, e.g. "gemma3 270M Q4_K - Medium".
    public var summary: String {
        var buffer = [CChar](repeating: 0, count: 256)
        let count = llama_model_desc(pointer, &buffer, buffer.count)
        return count > 0 ? String(decoding: buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown"
    }

    /// Text to tokens; special tokens in `text` (from a chat template) are parsed as such.
    public func tokenize(_ text: String, addSpecial: Bool) -> [Int32] {
        let utf8 = Array(text.utf8)
        var tokens = [Int32](repeating: 0, count: utf8.count + 8)
        var count = utf8.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { chars in
                llama_tokenize(vocab, chars.baseAddress, Int32(chars.count), &tokens, Int32(tokens.count), addSpecial, true)
            }
        }
        if count < 0 {
            tokens = [Int32](repeating: 0, count: Int(-count))
            count = utf8.withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    llama_tokenize(vocab, chars.baseAddress, Int32(chars.count), &tokens, Int32(tokens.count), addSpecial, true)
                }
            }
        }
        return Array(tokens.prefix(max(0, Int(count))))
    }

    /// The bytes of one token; they may end inside a UTF-8 character.
    /// `special`: a special token as its text (a tool-call marker the output's reader needs).
    func piece(_ token: Int32, special: Bool = false, into buffer: inout [CChar]) -> ArraySlice<CChar> {
        var count = llama_token_to_piece(vocab, token, &buffer, Int32(buffer.count), 0, special)
        if count < 0 {
            buffer = [CChar](repeating: 0, count: Int(-count))
            count = llama_token_to_piece(vocab, token, &buffer, Int32(buffer.count), 0, special)
        }
        return buffer.prefix(max(0, Int(count)))
    }

    func isEndOfGeneration(_ token: Int32) -> Bool { llama_vocab_is_eog(vocab, token) }

    /// The end-of-sequence token.
    var endToken: Int32 { llama_vocab_eos(vocab) }

    var vocabularySize: Int32 { llama_vocab_n_tokens(vocab) }

    /// Renders a conversation with the model's chat template: its Jinja template through llama.cpp's
    /// common library, or for a file without one llama.cpp's built-in template for its
    /// architecture (which knows no template variables: `chat_template_kwargs` is refused there).
    public func renderChat(_ conversation: ChatConversation) throws(RbeeError) -> ChatRendering {
        if let templates { return try templates.render(conversation) }
        let builtinTemplateName = chatTemplate.name ?? "chatml"
        if conversation.tools != nil {
            throw RbeeError.invalid([
                .init(
                    field: "tools",
                    message: "this model has no Jinja chat template (llama.cpp's built-in '\(builtinTemplateName)' renders it), so it cannot be shown tools; give it a template that knows tools: `rbee models template <model> <file.jinja>` on the queen, or the worker's --chat-template-file")
            ])
        }
        if !conversation.chatTemplateKwargs.isEmpty {
            throw RbeeError.invalid([
                .init(
                    field: "chat_template_kwargs",
                    message: "this model has no Jinja chat template (llama.cpp's built-in '\(builtinTemplateName)' renders it); start its worker with --chat-template-file to use template variables")
            ])
        }
        let prompt = try renderBuiltin(builtinTemplateName, conversation.messages, addGenerationPrompt: conversation.addGenerationPrompt)
        return ChatRendering(prompt: prompt, additionalStops: [])
    }

    private func renderBuiltin(_ template: String, _ messages: [ChatMessage], addGenerationPrompt: Bool) throws(RbeeError) -> String {
        // strdup'd copies keep the C strings valid for the whole call.
        let roles = messages.map { strdup($0.role) }
        let contents = messages.map { strdup($0.content) }
        defer {
            roles.forEach { free($0) }
            contents.forEach { free($0) }
        }
        let chat = zip(roles, contents).map { llama_chat_message(role: $0, content: $1) }
        let estimate = messages.reduce(256) { $0 + 2 * ($1.content.utf8.count + $1.role.utf8.count) }
        var buffer = [CChar](repeating: 0, count: estimate)
        var count = llama_chat_apply_template(template, chat, chat.count, addGenerationPrompt, &buffer, Int32(buffer.count))
        if count > buffer.count {
            buffer = [CChar](repeating: 0, count: Int(count))
            count = llama_chat_apply_template(template, chat, chat.count, addGenerationPrompt, &buffer, Int32(buffer.count))
        }
        guard count >= 0 else {
            throw RbeeError(.invalidRequest, "llama.cpp's built-in chat template '\(template)' cannot render this conversation; send prompt instead of messages")
        }
        return String(decoding: buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Carries the progress closure through llama.cpp's `void *` user data.
private final class ProgressBox {
    let report: (Double) -> Bool
    private(set) var aborted = false

    init(_ report: @escaping (Double) -> Bool) { self.report = report }

    func report(_ fraction: Double) -> Bool {
        let keepGoing = report(fraction)
        if !keepGoing { aborted = true }
        return keepGoing
    }
}
