import Foundation
import RbeeAPI
import RbeeGGUF
import RbeeTestSupport
import Testing

/// Chat templates through the queen: its OpenAI route renders with the model's own template (and
/// hands `chat_template_kwargs` on), and its worker list says where each template came from (from
/// the hive's first heartbeat after the worker is ready).
@Suite(.serialized) struct ChatTemplateQueenTests {
    @Test func aChatThroughTheQueenUsesTheModelsOwnTemplateAndEndsByItsEndOfTurn() async throws {
        let queen = try await Self.startQueen(home: try temporaryHome())
        defer { Task { await queen.stop() } }
        let (response, body) = try await post(
            queen.url + "/v1/chat/completions",
            json: #"{"model":"file:\#(instructModelPath)","messages":[{"role":"system","content":"You are a helpful assistant."},"#
                + #"{"role":"user","content":[{"type":"text","text":"What is the capital of France?"}]}],"#
                + #""max_tokens":64,"temperature":0,"chat_template_kwargs":{"enable_thinking":false}}"#)
        let text = String(decoding: body, as: UTF8.self)
        #expect(response.status == .ok, "\(text) \(queen.tail())")
        #expect(text.contains(#""finish_reason":"stop""#) && text.contains("Paris"), "\(text)")
        // The same conversation again: its prompt comes from the worker's slot, and usage says so.
        let (_, repeated) = try await post(
            queen.url + "/v1/chat/completions",
            json: #"{"model":"\#(instructModelID)","messages":[{"role":"system","content":"You are a helpful assistant."},"#
                + #"{"role":"user","content":"What is the capital of France?"}],"max_tokens":8,"temperature":0}"#)
        struct Usage: Decodable {
            struct Details: Decodable { var cached_tokens: Int }
            struct Counts: Decodable { var prompt_tokens: Int; var prompt_tokens_details: Details }
            var usage: Counts
        }
        let usage = try decode(Usage.self, repeated).usage
        #expect(usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1, "\(String(decoding: repeated, as: UTF8.self))")
        // The hive's next heartbeat brings the ready worker's template.
        struct Workers: Decodable { var workers: [ClusterWorker] }
        try await waitUntil(.seconds(10)) { try await get(queen.url + "/v1/workers", as: Workers.self).workers.first?.chatTemplate != nil }
        let worker = try #require(try await get(queen.url + "/v1/workers", as: Workers.self).workers.first)
        #expect(worker.chatTemplate == ChatTemplateInfo(source: .gguf), "\(String(describing: worker.chatTemplate))")

        // A template for the model: kept by its hive, the model's worker restarted, the next chat's
        // worker renders with it.
        let qwen3 = try String(contentsOfFile: try llamaTemplateDirectory() + "/Qwen-Qwen3-0.6B.jinja", encoding: .utf8)
        let (set, setBody) = try await send(
            .PUT, queen.url + "/v1/models/\(instructModelID)/template",
            json: String(decoding: try JSONEncoder().encode(ChatTemplateUpdate(template: qwen3)), as: UTF8.self))
        let change = String(decoding: setBody, as: UTF8.self)
        #expect(set.status == .ok && change.contains(#""hives":["localhost"]"#) && change.contains(worker.workerID), "\(change)")
        struct Models: Decodable {
            struct Entry: Decodable { var id: String; var chat_template_sha256: String? }
            var data: [Entry]
        }
        let listed = try await get(queen.url + "/v1/models", as: Models.self).data.first { $0.id == instructModelID }
        #expect(listed?.chat_template_sha256 != nil, "\(String(describing: listed))")
        let (again, againBody) = try await post(
            queen.url + "/v1/chat/completions",
            json: #"{"model":"\#(instructModelID)","messages":[{"role":"user","content":"Hi"}],"max_tokens":16,"temperature":0,"chat_template_kwargs":{"enable_thinking":false}}"#)
        #expect(again.status == .ok, "\(String(decoding: againBody, as: UTF8.self))")
        try await waitUntil(.seconds(10)) {
            try await get(queen.url + "/v1/workers", as: Workers.self).workers.contains { $0.chatTemplate?.source == .file && $0.workerID != worker.workerID }
        }
        let (unknown, _) = try await send(.PUT, queen.url + "/v1/models/no-such-model/template", json: #"{"template":"x"}"#)
        #expect(unknown.status == .notFound)

        let (refused, refusal) = try await post(
            queen.url + "/v1/completions", json: #"{"model":"file:\#(instructModelPath)","prompt":"Hi","chat_template_kwargs":{}}"#)
        #expect(refused.status == .badRequest && String(decoding: refusal, as: UTF8.self).contains("chat_template_kwargs"), "\(String(decoding: refusal, as: UTF8.self))")
        await queen.stop()
    }

    static let conversation = [
        ChatMessage(role: "system", content: "You are terse."), ChatMessage(role: "user", content: "Hi there"),
        ChatMessage(role: "assistant", content: "Hello!"), ChatMessage(role: "user", content: "What is the capital of France?"),
    ]
    static let conversationJSON = #"[{"role":"system","content":"You are terse."},{"role":"user","content":"Hi there"},"#
        + #"{"role":"assistant","content":"Hello!"},{"role":"user","content":[{"type":"text","text":"What is the capital of France?"}]}]"#

    static func startQueen(home: String) async throws -> Daemon {
        let port = freePort()
        let queen = try Daemon(
            binary(named: "queen-rbee"),
            [
                "--port", "\(port)", "--home", home, "--local-hive-port", "0", "--hive-heartbeat-secs", "1",
                "--model-dir", (instructModelPath as NSString).deletingLastPathComponent,
            ],
            url: "http://127.0.0.1:\(port)", log: home + "/queen-\(port).log")
        try await queen.waitHealthy()
        return queen
    }

    static func applyTemplate(_ queen: Daemon, model: String = instructModelID, extra: String = "") async throws -> (status: Int, body: String) {
        let (response, body) = try await post(queen.url + "/apply-template", json: #"{"model":"\#(model)","messages":\#(conversationJSON)\#(extra)}"#)
        return (Int(response.status.code), String(decoding: body, as: UTF8.self))
    }

    /// The queen's `/apply-template` renders on the worker that would serve the chat (started for
    /// it): the GGUF's template, then the one `rbee models template` set, also on the worker a
    /// restarted hive spawns. A template that raises is a 400 with its message; one that does not
    /// parse fails the worker's load, reported as MODEL_LOAD_FAILED.
    @Test func theQueensApplyTemplateShowsTheTemplateSetForTheModelAcrossARestart() async throws {
        let home = try temporaryHome()
        var queen = try await Self.startQueen(home: home)
        let own = try #require(try GGUFFile(path: instructModelPath).metadata["tokenizer.chat_template"]?.string)
        var (status, body) = try await Self.applyTemplate(queen, model: "file:" + instructModelPath)
        #expect(status == 200, "\(body) \(queen.tail())")
        #expect(try decode(AppliedTemplate.self, Data(body.utf8)).prompt == (try Jinja2.render(own, messages: Self.conversation, bos: instructBOS, eos: instructEOS)))

        let qwen3 = try String(contentsOfFile: try llamaTemplateDirectory() + "/Qwen-Qwen3-0.6B.jinja", encoding: .utf8)
        let expected = try Jinja2.render(qwen3, messages: Self.conversation, bos: instructBOS, eos: instructEOS)
        let (set, setBody) = try await send(
            .PUT, queen.url + "/v1/models/\(instructModelID)/template",
            json: String(decoding: try JSONEncoder().encode(ChatTemplateUpdate(template: qwen3)), as: UTF8.self))
        #expect(set.status == .ok)
        struct Change: Decodable { var chat_template_sha256: String? }
        let sha256 = try decode(Change.self, setBody).chat_template_sha256
        (status, body) = try await Self.applyTemplate(queen)
        #expect(status == 200 && (try? decode(AppliedTemplate.self, Data(body.utf8)).prompt) == expected, "\(body)")
        (status, body) = try await Self.applyTemplate(queen, extra: #","chat_template_kwargs":{"enable_thinking":false}"#)
        #expect((try? decode(AppliedTemplate.self, Data(body.utf8)).prompt)?.hasSuffix("<|im_start|>assistant\n<think>\n\n</think>\n\n") == true, "\(body)")

        // A new queen on the same home: its hive starts again, and the worker it spawns renders with
        // the template the catalog kept.
        await queen.stop()
        queen = try await Self.startQueen(home: home)
        (status, body) = try await Self.applyTemplate(queen)
        #expect(status == 200 && (try? decode(AppliedTemplate.self, Data(body.utf8)).prompt) == expected, "\(body) \(queen.tail())")
        struct Models: Decodable {
            struct Entry: Decodable { var id: String; var chat_template_sha256: String? }
            var data: [Entry]
        }
        let listed = try await get(queen.url + "/v1/models", as: Models.self).data.first { $0.id == instructModelID }
        #expect(sha256 != nil && listed?.chat_template_sha256 == sha256, "\(String(describing: listed))")

        let raising = #"{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('no assistant turns here') }}{% endif %}{{ m.content }}{% endfor %}"#
        _ = try await send(
            .PUT, queen.url + "/v1/models/\(instructModelID)/template",
            json: String(decoding: try JSONEncoder().encode(ChatTemplateUpdate(template: raising)), as: UTF8.self))
        (status, body) = try await Self.applyTemplate(queen)
        #expect(status == 400 && body.contains("INVALID_REQUEST") && body.contains("no assistant turns here"), "\(body)")

        _ = try await send(
            .PUT, queen.url + "/v1/models/\(instructModelID)/template",
            json: String(decoding: try JSONEncoder().encode(ChatTemplateUpdate(template: "{% for m in messages %}{{ m.content }")), as: UTF8.self))
        (status, body) = try await Self.applyTemplate(queen)
        #expect(status == 503 && body.contains("MODEL_LOAD_FAILED") && body.contains("does not parse"), "\(body)")
        // The error answer closed its connection, and said so: the next request opens another.
        let (chat, chatBody) = try await post(
            queen.url + "/v1/chat/completions", json: #"{"model":"\#(instructModelID)","messages":[{"role":"user","content":"Hi"}],"max_tokens":4}"#)
        #expect(chat.status == .serviceUnavailable && String(decoding: chatBody, as: UTF8.self).contains("does not parse"))
        let (health, _) = try await get(queen.url + "/health")
        #expect(health.status == .ok)
        await queen.stop()
    }
}
