import Foundation
import RbeeAPI
import RbeeGGUF
import RbeeTestSupport
import RbeeWorker
import Testing

/// The worker renders `messages` with llama.cpp's Jinja engine: the model's own template, a
/// `--chat-template-file` in its place, or for a file without one llama.cpp's built-in template
/// as before; `/apply-template` shows what the model sees.
@Suite(.serialized) struct ChatTemplateWorkerTests {
    static let conversation = [
        ChatMessage(role: "system", content: "You are terse."),
        ChatMessage(role: "user", content: "Hi there"),
        ChatMessage(role: "assistant", content: "Hello!"),
        ChatMessage(role: "user", content: "What is the capital of France?"),
    ]
    static let conversationJSON = #"[{"role":"system","content":"You are terse."},{"role":"user","content":"Hi there"},"#
        + #"{"role":"assistant","content":"Hello!"},{"role":"user","content":[{"type":"text","text":"What is the capital of France?"}]}]"#

    static func applyTemplate(_ worker: RunningWorker, extra: String = "") async throws -> (status: Int, body: String) {
        let (response, body) = try await post(worker.baseURL + "/apply-template", json: #"{"messages":\#(conversationJSON)\#(extra)}"#)
        return (Int(response.status.code), String(decoding: body, as: UTF8.self))
    }

    /// The instruct model's own template, read from its GGUF: rendered as jinja2 renders it, and a
    /// chat with it ends by the end-of-turn token.
    @Test func theModelsOwnTemplate() async throws {
        let worker = try await RunningWorker.start(model: instructModelPath)
        await worker.waitLoaded()
        let health = try await get(worker.baseURL + "/health", as: WorkerHealth.self)
        #expect(health.chatTemplate == ChatTemplateInfo(source: .gguf, supportsTools: false, supportsThinking: false), "\(String(describing: health.chatTemplate))")
        let template = try #require(try GGUFFile(path: instructModelPath).metadata["tokenizer.chat_template"]?.string)
        let (status, body) = try await Self.applyTemplate(worker)
        #expect(status == 200, "\(body)")
        let expected = try Jinja2.render(template, messages: Self.conversation, bos: instructBOS, eos: instructEOS)
        #expect(try decode(AppliedTemplate.self, Data(body.utf8)).prompt == expected)
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    /// `--chat-template-file` (Qwen3's template) replaces the model's own: `/apply-template` gives
    /// its rendering, `chat_template_kwargs` reach it, and a chat streams to `[DONE]`, ended by
    /// the end-of-turn token the template's format shares with the model.
    @Test func aTemplateFileReplacesTheModelsOwn() async throws {
        let file = try llamaTemplateDirectory() + "/Qwen-Qwen3-0.6B.jinja"
        let worker = try await RunningWorker.start(model: instructModelPath) { $0.engine.chatTemplateFile = file }
        await worker.waitLoaded()
        let health = try await get(worker.baseURL + "/health", as: WorkerHealth.self)
        #expect(health.chatTemplate == ChatTemplateInfo(source: .file, supportsTools: true, supportsThinking: true), "\(String(describing: health.chatTemplate))")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let (status, body) = try await Self.applyTemplate(worker)
        #expect(status == 200, "\(body)")
        #expect(try decode(AppliedTemplate.self, Data(body.utf8)).prompt == (try Jinja2.render(text, messages: Self.conversation, bos: instructBOS, eos: instructEOS)))
        let (_, thinkingOff) = try await Self.applyTemplate(worker, extra: #","chat_template_kwargs":{"enable_thinking":false}"#)
        #expect(try decode(AppliedTemplate.self, Data(thinkingOff.utf8)).prompt.hasSuffix("<|im_start|>assistant\n<think>\n\n</think>\n\n"), "\(thinkingOff)")
        let (_, open) = try await Self.applyTemplate(worker, extra: #","add_generation_prompt":false"#)
        #expect(try decode(AppliedTemplate.self, Data(open.utf8)).prompt.hasSuffix("What is the capital of France?<|im_end|>\n"), "\(open)")

        var stream = try await EventStreamClient.open(
            worker.baseURL + "/v1/inference",
            json: #"{"messages":\#(Self.conversationJSON),"max_tokens":64,"temperature":0,"chat_template_kwargs":{"enable_thinking":false}}"#)
        let transcript = try await stream.collect()
        #expect(transcript.messages.last?.isDone == true)
        guard case .end(let stats)? = transcript.events.last else {
            Issue.record("no end event: \(transcript.events)")
            return
        }
        #expect(stats.stopReason == .eos && stats.tokensOut < 64, "\(stats)")
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    /// A file without a template (Gemma 3 270M) keeps llama.cpp's built-in rendering, so its output
    /// does not change; template variables are refused there, naming the field.
    @Test func aModelWithoutATemplateKeepsTheBuiltInOne() async throws {
        let worker = try await SharedWorker.get()
        let health = try await get(worker.baseURL + "/health", as: WorkerHealth.self)
        #expect(health.chatTemplate == ChatTemplateInfo(source: .builtin, name: "gemma"), "\(String(describing: health.chatTemplate))")
        let (response, body) = try await post(worker.baseURL + "/apply-template", json: #"{"messages":[{"role":"user","content":"Hi"}]}"#)
        #expect(response.status == .ok)
        #expect(try decode(AppliedTemplate.self, body).prompt == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
        let (refused, refusal) = try await post(
            worker.baseURL + "/v1/inference", json: #"{"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"x":1}}"#)
        #expect(refused.status == .badRequest)
        #expect(try decode(ErrorEnvelope.self, refusal).error.code == .invalidRequest)
        #expect(String(decoding: refusal, as: UTF8.self).contains(#""field":"chat_template_kwargs""#), "\(String(decoding: refusal, as: UTF8.self))")
        let (prompted, promptBody) = try await post(worker.baseURL + "/apply-template", json: #"{"prompt":"Hi"}"#)
        #expect(prompted.status == .badRequest, "\(String(decoding: promptBody, as: UTF8.self))")
    }

    /// A template that raises for an input answers 400 with its own message; a template file that
    /// does not parse fails the load with MODEL_LOAD_FAILED naming the file. Nothing crashes.
    @Test func badTemplatesAreErrors() async throws {
        let home = try temporaryHome()
        let raising = home + "/no-assistant.jinja"
        try #"{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('no assistant turns here') }}{% endif %}{{ m.content }}{% endfor %}"#
            .write(toFile: raising, atomically: true, encoding: .utf8)
        let worker = try await RunningWorker.start(model: instructModelPath) { $0.engine.chatTemplateFile = raising }
        await worker.waitLoaded()
        let (status, body) = try await Self.applyTemplate(worker)
        #expect(status == 400 && body.contains("INVALID_REQUEST") && body.contains("no assistant turns here"), "\(body)")
        let (answer, answerBody) = try await post(
            worker.baseURL + "/v1/inference", json: #"{"messages":\#(Self.conversationJSON),"max_tokens":4,"stream":false}"#)
        #expect(answer.status == .badRequest && String(decoding: answerBody, as: UTF8.self).contains("no assistant turns here"))
        worker.service.shutdownSwitch.request()
        try await worker.task.value

        let broken = home + "/broken.jinja"
        try "{% for m in messages %}{{ m.content }".write(toFile: broken, atomically: true, encoding: .utf8)
        let failed = try await RunningWorker.start(model: instructModelPath) { $0.engine.chatTemplateFile = broken }
        await failed.waitLoaded()
        let ready = try await get(failed.baseURL + "/v1/ready", as: WorkerReadiness.self)
        #expect(ready.state == .error && ready.error?.contains(broken) == true && ready.error?.contains("does not parse") == true, "\(ready)")
        failed.service.shutdownSwitch.request()
        _ = try? await failed.task.value
    }
}
