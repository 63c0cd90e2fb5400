import Foundation
import HTTPTypes
import Hummingbird
import RbeeAPI
import NIOCore
import NIOFoundationCompat
import RbeeHTTP

/// OpenAI-compatible routes: `POST /v1/chat/completions`, `POST /v1/completions`,
/// `GET /v1/models`. Errors use OpenAI's shape; the work is the native task's.
struct OpenAIRoutes: Sendable {
    let queen: QueenRoutes

    /// Under `/v1` and, as llama-server and vLLM serve them, without it.
    func register(on router: Router<RbeeRequestContext>) {
        for prefix in ["/v1", ""] {
            router.post("\(prefix)/chat/completions") { request, context in await completion(request, context, chat: true) }
            router.post("\(prefix)/completions") { request, context in await completion(request, context, chat: false) }
            router.get("\(prefix)/models") { _, _ in Response.json(ModelList(data: models())) }
            router.get("\(prefix)/models/:id") { _, context in
                let id = context.parameters.get("id") ?? ""
                guard let model = models().first(where: { $0.id == id }) else {
                    return Self.error(RbeeError(.modelNotFound, "no model \(id): GET /v1/models lists them"))
                }
                return Response.json(model)
            }
        }
    }

    /// The model of a request that names none: the queen's `--default-model`, else the only model
    /// it knows, if it knows just one.
    func defaultModel() -> String? {
        if let model = queen.configuration.defaultModel { return model }
        let known = models()
        return known.count == 1 ? known[0].id : nil
    }

    func completion(_ request: Request, _ context: RbeeRequestContext, chat: Bool) async -> Response {
        var request = request
        do {
            let (execution, submission) = try await queen.admit(&request, context, dialect: chat ? .chat : .completion, defaultModel: defaultModel())
            let id = (chat ? "chatcmpl-" : "cmpl-") + execution.task.id.dropFirst(5)
            let model = submission.requestedModel
            var response: Response
            if submission.task.inference.stream {
                let frames = OpenAIFrames(outputs: execution.outputs, chat: chat, id: id, model: model, includeUsage: submission.includeUsage)
                response = EventStreamResponse.make(request: request, context: context, frames: frames) { await execution.run() }
            } else {
                response = try await QueenRoutes.whole(request, execution) {
                    let whole = try await WholeTask.collect(execution.outputs)
                    return Self.answer(whole, id: id, model: model, chat: chat)
                }
            }
            response.headers[QueenRoutes.taskIDHeader] = execution.task.id
            return response
        } catch {
            var response = Self.error(CorrelationMiddleware.rbeeError(from: error))
            if error is ConnectionSpentError { response.headers[.connection] = "close" }
            return response
        }
    }

    /// A whole `chat.completion` or `text_completion`.
    static func answer(_ whole: WholeTask, id: String, model: String, chat: Bool) -> Response {
        let created = Int(Date().timeIntervalSince1970)
        let usage = OpenAIWire.Usage(whole.stats)
        let finish = OpenAIWire.finishReason(whole.stats)
        let message = OpenAIWire.Message(
            content: whole.toolCalls.isEmpty || !whole.text.isEmpty ? whole.text : nil, reasoningContent: whole.reasoning.isEmpty ? nil : whole.reasoning,
            toolCalls: whole.toolCalls)
        let body =
            chat
            ? OpenAIWire.json(
                OpenAIWire.Completion(
                    id: id, object: "chat.completion", created: created, model: model,
                    choices: [OpenAIWire.ChatChoice(message: message, finishReason: finish)], usage: usage))
            : OpenAIWire.json(
                OpenAIWire.Completion(
                    id: id, object: "text_completion", created: created, model: model,
                    choices: [OpenAIWire.TextChoice(text: whole.text, finishReason: finish)], usage: usage))
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(data: body)))
    }

    /// The queen's error answers: OpenAI's shape on OpenAI's routes (401, 404 and 413 included),
    /// the native envelope everywhere else.
    static let errorRenderer = ErrorRenderer { error, path, correlationID in
        isOpenAIPath(path) ? Self.error(error) : Response.error(error, correlationID: correlationID)
    }

    /// `/v1/models/{id}` is also the queen's own model management (`DELETE`, `…/template`), whose
    /// errors keep the native envelope; its OpenAI `GET` answers a missing model in OpenAI's shape.
    static func isOpenAIPath(_ path: String) -> Bool {
        if path == "/v1/models" || path == "/models" || path.hasPrefix("/models/") { return true }
        let bare = path.hasPrefix("/v1/") ? String(path.dropFirst(3)) : path
        return ["/chat/", "/completions", "/embeddings", "/responses"].contains { bare.hasPrefix($0) }
    }

    /// OpenAI's error shape, with the status (and `Retry-After`) of the rbee error.
    static func error(_ error: RbeeError) -> Response {
        var response = Response(
            status: .init(code: error.httpStatus), headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(data: OpenAIWire.json(OpenAIWire.ErrorBody(error)))))
        if let retryAfter = error.retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        return response
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
            /// The chat template set for the model on its hives (`rbee models template`), by sha256.
            var chatTemplateSHA256: String?
            /// For an alias (`rbee models alias`): the model it stands for.
            var aliasOf: String?

            enum CodingKeys: String, CodingKey {
                case id, object, created, quantization, hives, loaded
                case aliasOf = "alias_of"
                case ownedBy = "owned_by"
                case sizeBytes = "size_bytes"
                case chatTemplateSHA256 = "chat_template_sha256"
            }
        }
    }

    /// Every model in any hive's catalog, and whether a worker has it loaded.
    func models() -> [ModelList.Entry] {
        let workers = queen.scheduler.list()
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
                model.chatTemplateSHA256 = model.chatTemplateSHA256 ?? info?.chatTemplateSHA256
                byID[id] = model
            }
        }
        // The local hive's model directories, from the queen's first second: a file there is
        // served by its id before the local hive has imported it.
        for (id, path) in queen.localModelFiles() where byID[id] == nil {
            let size = (try? FileManager.default.attributesOfItem(atPath: (path as NSString).resolvingSymlinksInPath)[.size] as? Int) ?? nil
            byID[id] = ModelList.Entry(id: id, created: 0, sizeBytes: size, quantization: nil, hives: [], loaded: false)
        }
        for worker in workers where [.ready, .loading, .starting].contains(worker.state) {
            byID[worker.model]?.loaded = true
        }
        // Aliases, each listed as the model it stands for under its own name.
        for (alias, model) in queen.registry.aliases() where byID[alias] == nil {
            let target = (try? ModelReference(parsing: model))?.derivedID ?? model
            var entry = byID[target] ?? ModelList.Entry(id: alias, created: 0, sizeBytes: nil, quantization: nil, hives: [], loaded: false)
            entry.id = alias
            entry.aliasOf = model
            byID[alias] = entry
        }
        return byID.values.map { var model = $0; model.hives.sort(); return model }.sorted { $0.id < $1.id }
    }
}
