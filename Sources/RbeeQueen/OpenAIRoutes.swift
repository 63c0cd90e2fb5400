import Foundation
import HTTPTypes
import Hummingbird
import RbeeAPI
import RbeeHTTP

/// OpenAI-compatible routes: `POST /v1/chat/completions`, `POST /v1/completions`,
/// `GET /v1/models`. Errors use OpenAI's shape; the work is the native task's.
struct OpenAIRoutes: Sendable {
    let queen: QueenRoutes

    func register(on router: Router<RbeeRequestContext>) {
        router.post("/v1/chat/completions") { request, context in await completion(request, context, chat: true) }
        router.post("/v1/completions") { request, context in await completion(request, context, chat: false) }
        router.get("/v1/models") { _, _ in Response.json(ModelList(data: await models())) }
    }

    func completion(_ request: Request, _ context: RbeeRequestContext, chat: Bool) async -> Response {
        var request = request
        do {
            let (handle, parsed) = try await queen.admit(&request, context, dialect: chat ? .chat : .completion)
            let id = (chat ? "chatcmpl-" : "cmpl-") + handle.id.dropFirst(5)
            if !parsed.inference.stream {
                return try await Self.collect(handle, id: id, model: parsed.model, chat: chat)
            }
            let frames = OpenAIFrames(outputs: handle.outputs, chat: chat, id: id, model: parsed.model, includeUsage: parsed.includeUsage)
            var response = EventStreamResponse.make(request: request, keepAlive: nil, frames: frames) { handle.stop(.clientGone) }
            response.headers[HTTPField.Name("X-Task-Id")!] = handle.id
            return response
        } catch {
            let rbeeError = error as? RbeeError ?? RbeeError(.internalError, "internal error")
            var param: String?
            if case .array(let items)? = rbeeError.details["errors"], case .object(let first)? = items.first, case .string(let field)? = first["field"] {
                param = field
            }
            var response = Response.json(
                OpenAIError(code: rbeeError.code.rawValue, message: rbeeError.message, param: param), status: .init(code: rbeeError.httpStatus))
            if let retryAfter = rbeeError.retryAfter { response.headers[.retryAfter] = String(retryAfter) }
            return response
        }
    }

    static func collect(_ handle: TaskHandle, id: String, model: String, chat: Bool) async throws -> Response {
        var text = ""
        for await output in handle.outputs {
            guard case .event(let event) = output else { continue }
            switch event {
            case .token(let piece, _): text += piece
            case .end(let stats):
                let usage: JSONValue = .object([
                    "prompt_tokens": .number(Double(stats.promptTokens)), "completion_tokens": .number(Double(stats.tokensOut)),
                    "total_tokens": .number(Double(stats.promptTokens + stats.tokensOut)),
                ])
                let choice: JSONValue =
                    chat
                    ? .object([
                        "index": .number(0), "message": .object(["role": .string("assistant"), "content": .string(text)]),
                        "finish_reason": .string(OpenAIFrames.finishReason(stats.stopReason)), "logprobs": .null,
                    ])
                    : .object([
                        "index": .number(0), "text": .string(text), "finish_reason": .string(OpenAIFrames.finishReason(stats.stopReason)),
                        "logprobs": .null,
                    ])
                return .json(
                    JSONValue.object([
                        "id": .string(id), "object": .string(chat ? "chat.completion" : "text_completion"),
                        "created": .number(Double(Int(Date().timeIntervalSince1970))), "model": .string(model), "choices": .array([choice]),
                        "usage": usage,
                    ]))
            case .error(let code, let message):
                throw RbeeError(ErrorCode(rawValue: code) ?? .internalError, message)
            default: break
            }
        }
        throw RbeeError(.internalError, "the task ended without a result")
    }

    /// OpenAI's model list, each entry with rbee's facts beside OpenAI's fields.
    struct ModelList: Encodable, Sendable {
        var object = "list"
        var data: [Entry]

        struct Entry: Encodable, Sendable {
            var id: String
            var object = "model"
            var created: Int
            var ownedBy = "rbee"
            var sizeBytes: Int?
            var quantization: String?
            var hives: [String]
            var loaded: Bool

            enum CodingKeys: String, CodingKey {
                case id, object, created, quantization, hives, loaded
                case ownedBy = "owned_by"
                case sizeBytes = "size_bytes"
            }
        }
    }

    /// Every model in any hive's catalog, and whether a worker has it loaded.
    func models() async -> [ModelList.Entry] {
        let workers = await queen.scheduler.list()
        var byID: [String: ModelList.Entry] = [:]
        for entry in queen.registry.allEntries() {
            let catalog = entry.catalog.isEmpty ? entry.record.models.map { (id: $0, info: ModelInfo?.none) } : entry.catalog.map { ($0.id, $0) }
            for (id, info) in catalog {
                var model =
                    byID[id]
                    ?? ModelList.Entry(
                        id: id, created: Int(info?.createdAt ?? 0), sizeBytes: info?.sizeBytes, quantization: info?.quantization, hives: [],
                        loaded: false)
                model.hives.append(entry.record.name)
                model.sizeBytes = model.sizeBytes ?? info?.sizeBytes
                model.quantization = model.quantization ?? info?.quantization
                byID[id] = model
            }
        }
        for worker in workers where [.ready, .loading, .starting].contains(worker.state) {
            byID[worker.model]?.loaded = true
        }
        return byID.values.map { var model = $0; model.hives.sort(); return model }.sorted { $0.id < $1.id }
    }
}
