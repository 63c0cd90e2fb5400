import Foundation
import RbeeAPI
import RbeeGGUF
import RbeeInference
import RbeeTestSupport
import Testing

/// llama.cpp's Jinja rendering (through `CRbeeChat`) gives the prompt an independent renderer
/// gives: Python's jinja2 with Hugging Face's conventions (`scripts/jinja_render.py`), on real
/// templates of the pinned llama.cpp tree and on the instruct model's own.
@Suite struct ChatTemplateRenderingTests {
    /// A system message, two user turns and an assistant turn between them.
    static let conversation = [
        ChatMessage(role: "system", content: "You are terse."),
        ChatMessage(role: "user", content: "Hi there"),
        ChatMessage(role: "assistant", content: "Hello!"),
        ChatMessage(role: "user", content: "What is 2+2? Answer with “four” or 4."),
    ]

    struct Family: Sendable, CustomTestStringConvertible {
        var name: String
        var file: String
        var bos = ""
        var eos = ""
        /// The conversation jinja2 is given, where llama.cpp deliberately renders another one;
        /// `allowed` says why.
        var reference: [ChatMessage]? = nil
        var allowed: String? = nil
        var testDescription: String { name }
    }

    static let families: [Family] = [
        Family(name: "Qwen3", file: "Qwen-Qwen3-0.6B.jinja", eos: "<|im_end|>"),
        Family(name: "Qwen 2.5", file: "Qwen-Qwen2.5-7B-Instruct.jinja", eos: "<|im_end|>"),
        Family(name: "Llama 3.1", file: "meta-llama-Llama-3.1-8B-Instruct.jinja", bos: "<|begin_of_text|>", eos: "<|eot_id|>"),
        Family(name: "Llama 3.3", file: "meta-llama-Llama-3.3-70B-Instruct.jinja", bos: "<|begin_of_text|>", eos: "<|eot_id|>"),
        Family(
            name: "Gemma 2", file: "google-gemma-2-2b-it.jinja", bos: "<bos>", eos: "<eos>",
            reference: [
                ChatMessage(role: "user", content: "You are terse.\nHi there"), conversation[2], conversation[3],
            ],
            allowed: "the template raises on a system role; llama.cpp folds the system message into the first user turn"),
        Family(name: "Gemma 4", file: "google-gemma-4-31B-it.jinja", bos: "<bos>", eos: "<eos>"),
        Family(name: "Mistral Nemo", file: "mistralai-Mistral-Nemo-Instruct-2407.jinja", bos: "<s>", eos: "</s>"),
        Family(name: "gpt-oss", file: "openai-gpt-oss-120b.jinja", bos: "<|startoftext|>", eos: "<|return|>"),
        Family(
            name: "DeepSeek R1", file: "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", bos: "<｜begin▁of▁sentence｜>",
            eos: "<｜end▁of▁sentence｜>"),
        Family(name: "SmolLM3", file: "HuggingFaceTB-SmolLM3-3B.jinja", eos: "<|im_end|>"),
    ]

    @Test(arguments: families) func rendersAsJinja2Does(_ family: Family) throws {
        let text = try String(contentsOfFile: try llamaTemplateDirectory() + "/" + family.file, encoding: .utf8)
        let templates = try ChatTemplates(text: text, bosToken: family.bos, eosToken: family.eos)
        let rendering = try templates.render(ChatConversation(messages: Self.conversation))
        let expected = try Jinja2.render(text, messages: family.reference ?? Self.conversation, bos: family.bos, eos: family.eos)
        #expect(rendering.prompt == expected, "\(family.name) (\(family.allowed ?? "no difference allowed"))")
    }

    /// Qwen3 with thinking off renders the empty think block its template specifies.
    @Test func qwen3WithoutThinkingRendersAnEmptyThinkBlock() throws {
        let text = try String(contentsOfFile: try llamaTemplateDirectory() + "/Qwen-Qwen3-0.6B.jinja", encoding: .utf8)
        let templates = try ChatTemplates(text: text, eosToken: "<|im_end|>")
        let off = try templates.render(ChatConversation(messages: Self.conversation, chatTemplateKwargs: ["enable_thinking": .bool(false)]))
        #expect(off.prompt.hasSuffix("<|im_start|>assistant\n<think>\n\n</think>\n\n"), "\(off.prompt)")
        let expected = try Jinja2.render(text, messages: Self.conversation, eos: "<|im_end|>", extra: ["enable_thinking": .bool(false)])
        #expect(off.prompt == expected)
        let on = try templates.render(ChatConversation(messages: Self.conversation))
        #expect(on.prompt.hasSuffix("<|im_start|>assistant\n"), "\(on.prompt)")
        #expect(try templates.capabilities().supportsThinking)
    }

    /// The instruct model's own template, read from its GGUF header.
    @Test func theInstructModelsOwnTemplateRendersAsJinja2Does() throws {
        let text = try #require(try GGUFFile(path: instructModelPath).metadata["tokenizer.chat_template"]?.string)
        let templates = try ChatTemplates(text: text, bosToken: "<|im_start|>", eosToken: "<|im_end|>")
        let rendering = try templates.render(ChatConversation(messages: Self.conversation))
        #expect(rendering.prompt == (try Jinja2.render(text, messages: Self.conversation, bos: "<|im_start|>", eos: "<|im_end|>")))
        #expect(rendering.prompt.hasSuffix("<|im_start|>assistant\n"))
        let capabilities = try templates.capabilities()
        #expect(capabilities.explicit && !capabilities.supportsTools && !capabilities.supportsThinking, "\(capabilities)")
    }

    /// A template that raises gives its own message as an invalid request; one that does not
    /// parse is refused when it is read; neither crashes.
    @Test func badTemplatesAreErrorsNotCrashes() throws {
        let raising = try ChatTemplates(text: "{% if messages|length > 1 %}{{ raise_exception('roles must alternate') }}{% endif %}ok")
        #expect(try raising.render(ChatConversation(messages: [ChatMessage(role: "user", content: "x")])).prompt == "ok")
        do {
            _ = try raising.render(ChatConversation(messages: Self.conversation))
            Issue.record("a raising template rendered")
        } catch {
            #expect(error.code == .invalidRequest && error.message.contains("roles must alternate"), "\(error)")
        }
        do {
            _ = try ChatTemplates(text: "{% for message in messages %}{{ message.content }")
            Issue.record("a broken template parsed")
        } catch {
            #expect(error.code == .invalidRequest && error.message.contains("does not parse"), "\(error)")
        }
    }
}
