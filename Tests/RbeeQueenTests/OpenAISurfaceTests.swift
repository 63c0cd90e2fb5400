import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import RbeeAPI
import RbeeTestSupport
import Testing

/// What OpenAI clients probe besides a chat: the routes without `/v1`, CORS for a browser page,
/// OpenAI's error shape on every OpenAI route (401 and 404 included), the model list from the
/// queen's first second and a default model for requests that name none.
@Suite(.serialized) struct OpenAISurfaceTests {
    static let origin = "http://localhost:3000"
    static let token = "surface-test-token-0123456789"

    /// A queen whose local model directory holds one model (a copy of the instruct model).
    static func startQueen() async throws -> (Daemon, String) {
        let home = try temporaryHome()
        let models = home + "/models"
        try FileManager.default.createDirectory(atPath: models, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: instructModelPath, toPath: models + "/" + instructModelID + ".gguf")
        let port = freePort()
        let queen = try Daemon(
            binary(named: "queen-rbee"),
            ["--port", "\(port)", "--home", home, "--local-hive-port", "0", "--model-dir", models, "--cors-origin", origin],
            url: "http://127.0.0.1:\(port)", log: home + "/queen.log", environment: ["RBEE_API_TOKEN": token])
        try await queen.waitHealthy()
        return (queen, home)
    }

    static func request(_ method: HTTPMethod, _ url: String, headers: [(String, String)] = [], json: String? = nil) async throws
        -> (HTTPClientResponse, String)
    {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: json))
        }
        let response = try await http.execute(request, timeout: .seconds(120))
        return (response, String(decoding: Data(buffer: try await response.body.collect(upTo: 16 << 20)), as: UTF8.self))
    }

    @Test func theSurfaceClientsProbe() async throws {
        let (queen, _) = try await Self.startQueen()
        let auth = [("Authorization", "Bearer \(Self.token)")]

        // The model list before anything was asked of the queen, under /v1 and without it.
        for path in ["/v1/models", "/models"] {
            let (listed, list) = try await Self.request(.GET, queen.url + path, headers: auth)
            #expect(listed.status == .ok && list.contains("\"id\":\"\(instructModelID)\""), "\(path): \(list)")
        }
        let (one, model) = try await Self.request(.GET, queen.url + "/models/\(instructModelID)", headers: auth)
        #expect(one.status == .ok && model.contains("\"object\":\"model\""), "\(model)")
        let (missing, missingBody) = try await Self.request(.GET, queen.url + "/v1/models/no-such-model", headers: auth)
        #expect(missing.status == .notFound && missingBody.contains("\"code\":\"model_not_found\""), "\(missingBody)")

        // No model named: the only one known serves it, and the answer names it.
        let (chat, answer) = try await Self.request(
            .POST, queen.url + "/chat/completions", headers: auth, json: #"{"messages":[{"role":"user","content":"Name a colour."}],"max_tokens":6}"#)
        #expect(chat.status == .ok && answer.contains("\"model\":\"\(instructModelID)\"") && answer.contains("chat.completion"), "\(answer) \(queen.tail())")
        let (completion, text) = try await Self.request(
            .POST, queen.url + "/completions", headers: auth, json: #"{"prompt":"The sky is","max_tokens":3}"#)
        #expect(completion.status == .ok && text.contains("text_completion"), "\(text)")

        // An alias stands for its model; answers and the list use its name.
        let (aliased, _) = try await Self.request(.PUT, queen.url + "/v1/aliases/gpt-test", headers: auth, json: #"{"model":"\#(instructModelID)"}"#)
        #expect(aliased.status == .ok)
        let (viaAlias, aliasAnswer) = try await Self.request(
            .POST, queen.url + "/v1/chat/completions", headers: auth, json: #"{"model":"gpt-test","messages":[{"role":"user","content":"Hi"}],"max_tokens":3}"#)
        #expect(viaAlias.status == .ok && aliasAnswer.contains("\"model\":\"gpt-test\""), "\(aliasAnswer)")
        let (_, withAlias) = try await Self.request(.GET, queen.url + "/v1/models", headers: auth)
        #expect(withAlias.contains("\"id\":\"gpt-test\"") && withAlias.contains("\"alias_of\":\"\(instructModelID)\""), "\(withAlias)")
        let (removed, _) = try await Self.request(.DELETE, queen.url + "/v1/aliases/gpt-test", headers: auth)
        let (again, _) = try await Self.request(.DELETE, queen.url + "/v1/aliases/gpt-test", headers: auth)
        #expect(removed.status == .noContent && again.status == .notFound)

        // A wrong key: OpenAI's 401 shape, with or without /v1.
        for path in ["/chat/completions", "/v1/chat/completions"] {
            let (refused, refusal) = try await Self.request(
                .POST, queen.url + path, headers: [("Authorization", "Bearer wrong")], json: #"{"messages":[{"role":"user","content":"x"}]}"#)
            #expect(refused.status == .unauthorized, "\(path)")
            #expect(refusal.contains("\"type\":\"authentication_error\"") && refusal.contains("\"code\":\"invalid_api_key\""), "\(path): \(refusal)")
        }

        // CORS: a preflight from the allowed origin is answered before authentication; another
        // origin gets no CORS header; an answer to the allowed origin names it.
        let preflight = [("Origin", Self.origin), ("Access-Control-Request-Method", "POST"), ("Access-Control-Request-Headers", "authorization, content-type")]
        let (allowed, _) = try await Self.request(.OPTIONS, queen.url + "/v1/chat/completions", headers: preflight)
        #expect(allowed.status == .noContent && allowed.headers.first(name: "Access-Control-Allow-Origin") == Self.origin, "\(allowed.headers)")
        #expect(allowed.headers.first(name: "Access-Control-Allow-Methods")?.contains("POST") == true)
        #expect(allowed.headers.first(name: "Access-Control-Allow-Headers")?.contains("authorization") == true)
        let (other, _) = try await Self.request(
            .OPTIONS, queen.url + "/v1/chat/completions", headers: [("Origin", "http://elsewhere.example"), ("Access-Control-Request-Method", "POST")])
        #expect(other.headers.first(name: "Access-Control-Allow-Origin") == nil, "\(other.headers)")
        let (listed, _) = try await Self.request(.GET, queen.url + "/models", headers: auth + [("Origin", Self.origin)])
        #expect(listed.headers.first(name: "Access-Control-Allow-Origin") == Self.origin)
        await queen.stop()
    }
}
