import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOFoundationCompat
import RbeeAPI
import RbeeHTTP

/// The queen's HTTP API (SPEC §3 "Queen"): hives, workers, models, native task streams, and the
/// OpenAI-compatible routes (`OpenAIRoutes`).
struct QueenRoutes: Sendable {
    let configuration: QueenConfiguration
    let registry: HiveRegistry
    let scheduler: Scheduler
    let runner: TaskRunner
    let hives: HiveClient
    let localHive: LocalHive?
    let metrics: QueenMetrics
    let shutdown: ShutdownSwitch
    let startedAt = ContinuousClock.now

    static let deadlineHeader = HTTPField.Name("X-Request-Deadline")!

    func register(on router: Router<RbeeRequestContext>) {
        router.get("/health") { _, _ in
            let hives = registry.list()
            return Response.json(
                QueenHealth(
                    status: "ok", uptimeS: (ContinuousClock.now - startedAt).milliseconds / 1000,
                    hivesOnline: hives.filter { $0.status == .online }.count, hivesTotal: hives.count, workers: await scheduler.list().count,
                    queued: await scheduler.queued, pid: getpid()))
        }
        router.get("/metrics") { _, _ in
            let text = metrics.render(queued: await scheduler.queued, hives: registry.list(), workers: await scheduler.list().count)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        router.post("/v1/hives") { request, context in try await addHive(request, context) }
        router.get("/v1/hives") { _, _ in Response.json(HiveList(hives: registry.list())) }
        router.delete("/v1/hives/{name}") { _, context in
            let name = context.parameters.get("name") ?? ""
            guard try await registry.remove(name: name) else {
                throw RbeeError(.hiveNotFound, "no hive named \(name) is registered", details: ["name": .string(name)])
            }
            await scheduler.sync(hive: name, workers: [])
            return Response(status: .noContent)
        }
        router.post("/v1/hives/heartbeat") { request, _ in
            var request = request
            let beat: HiveHeartbeat = try await decodeBody(&request)
            guard beat.apiVersion == RbeeVersion.apiVersion else {
                throw RbeeError(
                    .versionMismatch, "hive \(beat.name) speaks API version \(beat.apiVersion); this queen speaks \(RbeeVersion.apiVersion)",
                    details: ["hive_api_version": .number(Double(beat.apiVersion)), "queen_api_version": .number(Double(RbeeVersion.apiVersion))])
            }
            guard Self.isHiveName(beat.name) else {
                throw RbeeError.invalid([.init(field: "name", message: "must be 1-63 letters, digits or '-' (DNS-safe)")])
            }
            try await registry.heard(
                name: beat.name, url: beat.url, cpuCores: beat.cpuCores, ramAvailableBytes: beat.ramAvailableBytes, workers: beat.workers,
                catalog: beat.catalog, models: beat.models)
            await scheduler.sync(hive: beat.name, workers: beat.workers)
            return Response(status: .noContent)
        }
        router.get("/v1/workers") { _, _ in Response.json(WorkerList(workers: await scheduler.list())) }
        router.delete("/v1/workers/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let worker = await scheduler.worker(id), let hive = registry.entry(worker.hive) else {
                throw RbeeError(.workerNotFound, "no worker \(id) in the cluster", details: ["worker_id": .string(id)])
            }
            try await hives.stopWorker(id, hiveURL: hive.record.url, correlationID: context.correlationID)
            await scheduler.workerLost(id)
            return Response(status: .noContent)
        }
        router.post("/v2/tasks") { request, context in try await task(request, context) }
        router.delete("/v2/tasks/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let handle = runner.handle(id) else {
                throw RbeeError(.notFound, "no running task \(id)", details: ["task_id": .string(id)])
            }
            handle.stop(.cancelRequested)
            return Response(status: .noContent)
        }
        router.post("/v1/models/pull") { request, context in try await pull(request, context) }
        router.delete("/v1/models/{id}") { request, context in try await removeModel(request, context) }
        router.post("/v1/shutdown") { _, context in
            context.logger.info("shutdown requested over HTTP")
            shutdown.request()
            return Response.json(["status": "stopping"], status: .accepted)
        }
    }

    struct HiveList: Codable, Sendable { var hives: [HiveRecord] }
    struct WorkerList: Codable, Sendable { var workers: [ClusterWorker] }

    static func isHiveName(_ name: String) -> Bool {
        (1...63).contains(name.utf8.count) && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }

    // MARK: Hives

    func addHive(_ request: Request, _ context: RbeeRequestContext) async throws -> Response {
        var request = request
        let body: AddHiveRequest = try await decodeBody(&request)
        var errors: [RbeeError.FieldError] = []
        if !Self.isHiveName(body.name) { errors.append(.init(field: "name", message: "must be 1-63 letters, digits or '-' (DNS-safe)")) }
        let url = body.url.hasSuffix("/") ? String(body.url.dropLast()) : body.url
        if !(url.hasPrefix("http://") || url.hasPrefix("https://")) || url.count > 512 || url.contains(where: { $0.isWhitespace }) {
            errors.append(.init(field: "url", message: "must be an http:// or https:// URL"))
        }
        if !errors.isEmpty { throw RbeeError.invalid(errors) }
        if registry.entry(body.name) != nil {
            throw RbeeError(.hiveExists, "a hive named \(body.name) is already registered", details: ["name": .string(body.name)])
        }
        // The hive must answer, and speak this queen's API version, before it is saved.
        let health = try await hives.health(hiveURL: url)
        guard health.apiVersion == RbeeVersion.apiVersion else {
            throw RbeeError(
                .versionMismatch, "the hive at \(url) speaks API version \(health.apiVersion); this queen speaks \(RbeeVersion.apiVersion)",
                details: ["hive_api_version": .number(Double(health.apiVersion))])
        }
        try await registry.add(name: body.name, url: url, source: "api")
        if let workers = try? await hives.workers(hiveURL: url), let catalog = try? await hives.models(hiveURL: url) {
            try await registry.heard(
                name: body.name, url: url, cpuCores: nil, ramAvailableBytes: nil, workers: workers, catalog: catalog, models: catalog.map(\.id),
                source: "api")
            await scheduler.sync(hive: body.name, workers: workers)
        }
        context.logger.info("hive registered", metadata: ["hive": "\(body.name)", "url": "\(url)"])
        let record = registry.list().first { $0.name == body.name }
        return Response.json(record, status: .created)
    }

    // MARK: Tasks

    /// Parses, validates and admits a task: everything that can fail before the stream starts
    /// fails with a status code (400, 404, 408, 429).
    func admit(_ request: inout Request, _ context: RbeeRequestContext, dialect: TaskRequest.Dialect) async throws
        -> (TaskHandle, TaskRequest)
    {
        let body = try await request.collectBody(upTo: context.maxUploadSize)
        let json: JSONValue
        do {
            json = try JSONDecoder().decode(JSONValue.self, from: body)
        } catch {
            throw RbeeError.invalid([.init(field: "body", message: "is not valid JSON")])
        }
        let parsed = try TaskRequest.parse(json, dialect: dialect)
        let deadlineHeader = request.headers[Self.deadlineHeader]
        var deadline: Date?
        if let deadlineHeader {
            guard let parsedDeadline = Self.parseDeadline(deadlineHeader) else {
                throw RbeeError.invalid([.init(field: "X-Request-Deadline", message: "must be an RFC 3339 date-time")])
            }
            guard parsedDeadline > Date() else {
                throw RbeeError(.deadlineExceeded, "the request deadline \(deadlineHeader) has already passed", details: ["deadline": .string(deadlineHeader)])
            }
            deadline = parsedDeadline
        }
        if let hive = parsed.hive, registry.entry(hive) == nil {
            throw RbeeError(.hiveNotFound, "no hive named \(hive) is registered", details: ["hive": .string(hive)])
        }
        if registry.isEmpty, let localHive { try await localHive.ensure() }
        let fetchable = if case .catalogID = parsed.reference { false } else { true }
        let want = Scheduler.Want(modelID: parsed.reference.derivedID, modelRef: parsed.model, fetchable: fetchable, hive: parsed.hive)
        var lease: Scheduler.Lease?
        if case .placed(let placed) = try await scheduler.admit(want) { lease = placed }
        let task = QueenTask(
            id: "task-" + String(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)), model: parsed.model,
            want: want, request: parsed.inference, correlationID: context.correlationID, deadlineHeader: deadlineHeader, deadline: deadline,
            arrivedAt: .now)
        context.logger.info("task accepted", metadata: ["task_id": "\(task.id)", "model": "\(parsed.model)", "placed": "\(lease != nil)"])
        return (runner.start(task, lease: lease), parsed)
    }

    func task(_ request: Request, _ context: RbeeRequestContext) async throws -> Response {
        var request = request
        let (handle, parsed) = try await admit(&request, context, dialect: .native)
        if !parsed.inference.stream {
            return try await Self.collect(handle)
        }
        var response = EventStreamResponse.make(request: request, keepAlive: nil, frames: TaskFrames(outputs: handle.outputs)) {
            handle.stop(.clientGone)
        }
        response.headers[HTTPField.Name("X-Task-Id")!] = handle.id
        return response
    }

    /// The whole answer of a `stream: false` task.
    struct TaskResult: Encodable, Sendable {
        var taskID: String
        var model: String
        var hive: String
        var workerID: String
        var text: String
        var stats: GenerationStats

        enum CodingKeys: String, CodingKey {
            case model, hive, text
            case taskID = "task_id"
            case workerID = "worker_id"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(taskID, forKey: .taskID)
            try container.encode(model, forKey: .model)
            try container.encode(hive, forKey: .hive)
            try container.encode(workerID, forKey: .workerID)
            try container.encode(text, forKey: .text)
            try stats.encode(to: encoder)
        }
    }

    static func collect(_ handle: TaskHandle) async throws -> Response {
        var text = ""
        var started: (model: String, hive: String, worker: String)?
        for await output in handle.outputs {
            guard case .event(let event) = output else { continue }
            switch event {
            case .started(_, let model, let hive, let worker, _): started = (model, hive, worker)
            case .token(let piece, _): text += piece
            case .end(let stats):
                return .json(
                    TaskResult(
                        taskID: handle.id, model: started?.model ?? "", hive: started?.hive ?? "", workerID: started?.worker ?? "", text: text,
                        stats: stats))
            case .error(let code, let message):
                throw RbeeError(ErrorCode(rawValue: code) ?? .internalError, message)
            default: break
            }
        }
        throw RbeeError(.internalError, "the task ended without a result")
    }

    static func parseDeadline(_ value: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: value) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: value)
    }

    // MARK: Models

    /// `POST /v1/models/pull`: the chosen hive's download progress, labelled, then `[DONE]`.
    func pull(_ request: Request, _ context: RbeeRequestContext) async throws -> Response {
        var request = request
        let body: PullRequest = try await decodeBody(&request)
        let reference = try ModelReference(parsing: body.model)
        if registry.isEmpty, let localHive { try await localHive.ensure() }
        let online = registry.online()
        let target: HiveRegistry.Entry
        if let name = body.hive {
            guard let entry = registry.entry(name) else {
                throw RbeeError(.hiveNotFound, "no hive named \(name) is registered", details: ["hive": .string(name)])
            }
            guard registry.isOnline(name) else {
                throw RbeeError(.hiveUnreachable, "hive \(name) is unreachable", details: ["hive": .string(name)], retryAfter: 10)
            }
            target = entry
        } else {
            let id = reference.derivedID
            guard
                let best = online.first(where: { $0.record.models.contains(id) })
                    ?? online.min(by: { ($0.workers.count, $0.record.name) < ($1.workers.count, $1.record.name) })
            else { throw RbeeError(.hiveUnreachable, "no hive is online", retryAfter: 10) }
            target = best
        }
        let hive = target.record.name
        let started = try await hives.download(DownloadRequest(modelRef: body.model), hiveURL: target.record.url, correlationID: context.correlationID)
        let (events, continuation) = AsyncStream.makeStream(of: PullEvent.self)
        if started.status == .cached {
            continuation.yield(
                PullEvent(hive: hive, model: started.modelID, progress: .complete(localPath: started.localPath ?? "", sha256: "", sizeBytes: 0)))
            continuation.finish()
        } else {
            let url = target.record.url + "/v1/models/download/progress?id=" + (started.downloadID ?? "")
            let client = hives.client(correlationID: context.correlationID)
            let relay = Task {
                defer { continuation.finish() }
                do {
                    var reader = try await client.stream(.GET, url)
                    while let message = try await reader.next() {
                        guard case .data(let json) = message, json != "[DONE]",
                            let progress = try? JSONDecoder().decode(DownloadProgress.self, from: Data(json.utf8))
                        else { continue }
                        continuation.yield(PullEvent(hive: hive, model: started.modelID, progress: progress))
                        if progress.isTerminal { return }
                    }
                    continuation.yield(
                        PullEvent(hive: hive, model: started.modelID, progress: .failed(code: ErrorCode.hiveUnreachable.rawValue, message: "hive \(hive) ended the progress stream early")))
                } catch {
                    let code = (error as? RbeeError)?.code.rawValue ?? ErrorCode.hiveUnreachable.rawValue
                    continuation.yield(PullEvent(hive: hive, model: started.modelID, progress: .failed(code: code, message: "\(error)")))
                }
            }
            continuation.onTermination = { _ in relay.cancel() }
        }
        return EventStreamResponse.make(request: request, keepAlive: configuration.keepAliveInterval, frames: ProgressFrames(events))
    }

    /// Decodes a small JSON body (kept collected on `request`); a malformed one is a 400.
    func decodeBody<T: Decodable>(_ request: inout Request) async throws -> T {
        let body = try await request.collectBody(upTo: 1 << 20)
        do {
            return try JSONDecoder().decode(T.self, from: body)
        } catch let DecodingError.keyNotFound(key, _) {
            throw RbeeError.invalid([.init(field: key.stringValue, message: "required")])
        } catch {
            throw RbeeError.invalid([.init(field: "body", message: "is not valid JSON or has fields of the wrong type")])
        }
    }

    /// `DELETE /v1/models/{id}[?hive=NAME]`: removes the model from every hive that has it.
    func removeModel(_ request: Request, _ context: RbeeRequestContext) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        let only = request.uri.queryParameters["hive"].map(String.init)
        let holders = registry.online().filter { $0.record.models.contains(id) && (only == nil || $0.record.name == only) }
        guard !holders.isEmpty else {
            throw RbeeError(.modelNotFound, "no online hive has the model \(id)", details: ["model": .string(id)])
        }
        for hive in holders {
            try await hives.removeModel(id, hiveURL: hive.record.url, correlationID: context.correlationID)
            if let catalog = try? await hives.models(hiveURL: hive.record.url) {
                try await registry.heard(
                    name: hive.record.name, url: hive.record.url, cpuCores: nil, ramAvailableBytes: nil, workers: hive.workers, catalog: catalog,
                    models: catalog.map(\.id), source: hive.record.source)
            }
        }
        return Response(status: .noContent)
    }
}

/// Task outputs as native SSE frames; tokens are encoded by hand (the per-token path).
struct TaskFrames: AsyncSequence, Sendable {
    typealias Element = String
    typealias Failure = Never
    let outputs: AsyncStream<TaskOutput>

    struct AsyncIterator: AsyncIteratorProtocol {
        var source: AsyncStream<TaskOutput>.AsyncIterator
        var done = false

        mutating func next() async -> String? {
            if done { return nil }
            guard let output = await source.next() else {
                done = true
                return SSE.done
            }
            switch output {
            case .keepAlive: return SSE.keepAlive
            case .event(.token(let text, let index)): return SSE.tokenFrame(text: text, index: index)
            case .event(let event): return SSE.frame(event)
            }
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: outputs.makeAsyncIterator()) }
}
