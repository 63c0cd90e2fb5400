import Foundation
import RbeeAPI
import RbeeTestSupport
import Testing

/// Chat templates through the queen: its OpenAI route renders with the model's own template (and
/// hands `chat_template_kwargs` on), and its worker list says where each template came from (from
/// the hive's first heartbeat after the worker is ready).
@Suite(.serialized) struct ChatTemplateQueenTests {
    @Test func aChatThroughTheQueenUsesTheModelsOwnTemplateAndEndsByItsEndOfTurn() async throws {
        let home = try temporaryHome()
        let port = freePort()
        let queen = try Daemon(
            binary(named: "queen-rbee"),
            [
                "--port", "\(port)", "--home", home, "--local-hive-port", "0", "--hive-heartbeat-secs", "1",
                "--model-dir", (instructModelPath as NSString).deletingLastPathComponent,
            ],
            url: "http://127.0.0.1:\(port)", log: home + "/queen.log")
        defer { Task { await queen.stop() } }
        try await queen.waitHealthy()
        let (response, body) = try await post(
            queen.url + "/v1/chat/completions",
            json: #"{"model":"file:\#(instructModelPath)","messages":[{"role":"system","content":"You are a helpful assistant."},"#
                + #"{"role":"user","content":[{"type":"text","text":"What is the capital of France?"}]}],"#
                + #""max_tokens":64,"temperature":0,"chat_template_kwargs":{"enable_thinking":false}}"#)
        let text = String(decoding: body, as: UTF8.self)
        #expect(response.status == .ok, "\(text) \(queen.tail())")
        #expect(text.contains(#""finish_reason":"stop""#) && text.contains("Paris"), "\(text)")
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
}
