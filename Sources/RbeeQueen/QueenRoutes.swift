import AsyncHTTPClient
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
    let tasks: RunningTasks
    let hives: HiveClient
    let localHive: LocalHive?
    let background: BackgroundTasks
    let http: HTTPClient
    let metrics: QueenMetrics
    let shutdown: ShutdownSwitch
    let startedAt = ContinuousClock.now

    static let deadlineHeader = HTTPField.Name("X-Request-Deadline")!
    static let taskIDHeader = HTTPField.Name("X-Task-Id")!

    func register(on router: Router<RbeeRequestContext>) {
        router.get("/health") { _, _ in
            let hives = registry.list()
            return Response.json(
                QueenHealth(
                    status: "ok", uptimeS: (ContinuousClock.now - startedAt).milliseconds / 1000,
                    hivesOnline: hives.filter { $0.status == .online }.count, hivesTotal: hives.count, workers: scheduler.list().count,
                    queued: scheduler.queued, pid: getpid()))
        }
        router.get("/metrics") { _, _ in
            let text = metrics.render(queued: scheduler.queued, hives: registry.list(), workers: scheduler.list().count)
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
            scheduler.hivesChanged()
            return Response(status: .noContent)
        }
        router.post("/v1/hives/heartbeat") { request, context in
            var request = request
            let beat = try await request.decodeBody(as: HiveHeartbeat.self, context: context)
            guard beat.apiVersion == RbeeVersion.apiVersion else {
                throw RbeeError(
                    .versionMismatch, "hive \(beat.name) speaks API version \(beat.apiVersion); this queen speaks \(RbeeVersion.apiVersion)",
                    details: ["hive_api_version": .number(Double(beat.apiVersion)), "queen_api_version": .number(Double(RbeeVersion.apiVersion))])
            }
            var errors: [RbeeError.FieldError] = []
            if !Validation.isHiveName(beat.name) { errors.append(.init(field: "name", message: "must be \(Validation.hiveNameRule)")) }
            if let id = beat.hiveID, !Validation.isValidID(id) { errors.append(.init(field: "hive_id", message: "must be [A-Za-z0-9._-]{1,64}")) }
            if !errors.isEmpty { throw RbeeError.invalid(errors) }
            try await registry.heard(
                name: beat.name, url: beat.url, cpuCores: beat.cpuCores, ramAvailableBytes: beat.ramAvailableBytes, workers: beat.workers,
                catalog: beat.catalog, models: beat.models, version: (beat.version, beat.apiVersion), hiveID: beat.hiveID,
                catalogVersion: beat.catalogVersion)
            scheduler.workersReported(hive: beat.name, workers: beat.workers)
            return Response(status: .noContent)
        }
        router.get("/v1/workers") { _, _ in Response.json(WorkerList(workers: scheduler.list())) }
        router.delete("/v1/workers/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard let worker = scheduler.worker(id), let hive = registry.entry(worker.hive) else {
                throw RbeeError(.workerNotFound, "no worker \(id) in the cluster", details: ["worker_id": .string(id)])
            }
            try await hives.stopWorker(id, hiveURL: hive.record.url, correlationID: context.correlationID)
            scheduler.workerLost(id)
            return Response(status: .noContent)
        }
        router.get("/v1/workers/{id}/logs") { request, context in
            let id = context.parameters.get("id") ?? ""
            let tail = request.uri.queryParameters["tail"].flatMap { Int($0) } ?? 65536
            // The worker's hive, or (for one that has ended) whichever hive still has its log.
            let known = scheduler.worker(id).flatMap { registry.entry($0.hive) }.map { [$0] } ?? []
            for hive in known + registry.online().filter({ entry in !known.contains { $0.record.name == entry.record.name } }) {
                if let text = try? await hives.workerLog(id, tail: tail, hiveURL: hive.record.url, correlationID: context.correlationID) {
                    return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(data: text)))
                }
            }
            throw RbeeError(.workerNotFound, "no hive has a log of worker \(id)", details: ["worker_id": .string(id)])
        }
        router.post("/v2/tasks") { request, context in try await task(request, context) }
        router.post("/apply-template") { request, context in try await applyTemplate(request, context) }
        router.delete("/v2/tasks/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard tasks.stop(id, reason: .cancelRequested) else {
                throw RbeeError(.notFound, "no running task \(id)", details: ["task_id": .string(id)])
            }
            return Response(status: .noContent)
        }
        router.post("/v1/models/pull") { request, context in try await pull(request, context) }
        router.delete("/v1/models/{id}") { request, context in try await removeModel(request, context) }
        router.put("/v1/models/{id}/template") { request, context in try await setTemplate(request, context) }
        router.delete("/v1/models/{id}/template") { request, context in try await setTemplate(request, context, clear: true) }
        router.get("/v1/aliases") { _, _ in Response.json(ModelAliases(aliases: registry.aliases())) }
        router.put("/v1/aliases/{name}") { request, context in
            let name = context.parameters.get("name") ?? ""
            guard Validation.isValidID(name) else {
                throw RbeeError.invalid([.init(field: "name", message: "an alias is [A-Za-z0-9._-]{1,64}")])
            }
            var request = request
            let body = try await request.decodeBody(as: JSONValue.self, context: context)
            guard case .object(let object) = body, case .string(let model)? = object["model"], (try? ModelReference(parsing: model)) != nil else {
                throw RbeeError.invalid([.init(field: "model", message: "required: the catalog id or reference the alias stands for")])
            }
            guard model != name else { throw RbeeError.invalid([.init(field: "model", message: "an alias cannot stand for itself")]) }
            try await registry.setAlias(name, to: model)
            context.logger.info("model alias set", metadata: ["alias": "\(name)", "model": "\(model)"])
            return Response.json(["alias": name, "model": model])
        }
        router.delete("/v1/aliases/{name}") { _, context in
            let name = context.parameters.get("name") ?? ""
            guard try await registry.removeAlias(name) else {
                throw RbeeError(.notFound, "no alias \(name)", details: ["alias": .string(name)])
            }
            return Response(status: .noContent)
        }
        router.post("/v1/shutdown") { _, context in
            context.logger.info("shutdown requested over HTTP")
            shutdown.request()
            return Response.json(["status": "stopping"], status: .accepted)
        }
    }

    struct HiveList: Codable, Sendable { var hives: [HiveRecord] }
    struct WorkerList: Codable, Sendable { var workers: [ClusterWorker] }

    // MARK: Hives

    func addHive(_ request: Request, _ context: RbeeRequestContext) async throws -> Response {
        var request = request
        let body = try await request.decodeBody(as: AddHiveRequest.self, context: context)
        var errors: [RbeeError.FieldError] = []
        if !Validation.isHiveName(body.name) { errors.append(.init(field: "name", message: "must be \(Validation.hiveNameRule)")) }
        let url = body.url.hasSuffix("/") ? String(body.url.dropLast()) : body.url
        if !(url.hasPrefix("http://") || url.hasPrefix("https://")) || url.count > 512 || url.contains(where: { $0.isWhitespace }) {
            errors.append(.init(field: "url", message: "must be an http:// or https:// URL"))
        }
        if !errors.isEmpty { throw RbeeError.invalid(errors) }
        // The hive must answer, and speak this queen's API version, before it is saved.
        try await registry.add(name: body.name, url: url, source: "api") { () throws(RbeeError) in try await hives.health(hiveURL: url) }
        if let workers = try? await hives.workers(hiveURL: url), let catalog = try? await hives.catalog(hiveURL: url) {
            try await registry.heard(
                name: body.name, url: url, cpuCores: nil, ramAvailableBytes: nil, workers: workers, catalog: catalog.models,
                models: catalog.models.map(\.id), source: "api", catalogVersion: catalog.version)
            scheduler.workersReported(hive: body.name, workers: workers)
        } else {
            scheduler.hivesChanged()
        }
        context.logger.info("hive registered", metadata: ["hive": "\(body.name)", "url": "\(url)"])
        let record = registry.list().first { $0.name == body.name }
        return Response.json(record, status: .created)
    }

    // MARK: Tasks

    /// Parses, validates and admits a task: everything that can fail before the stream starts
    /// fails with a status code (400, 404, 408, 429, 503).
    func admit(_ request: inout Request, _ context: RbeeRequestContext, dialect: TaskSubmission.Dialect, defaultModel: String? = nil) async throws
        -> (TaskExecution, TaskSubmission)
    {
        let json = try await request.decodeBody(as: JSONValue.self, context: context)
        var submission = try TaskSubmission.parse(json, dialect: dialect, defaultModel: defaultModel)
        if let user = submission.user { context.logger.info("OpenAI user", metadata: ["user": "\(user)"]) }
        // An alias stands for its model; answers keep the name the client used.
        if let target = registry.aliases()[submission.task.model] {
            submission.requested = submission.task.model
            submission.task = try TaskRequest(model: target, hive: submission.task.hive, inference: submission.task.inference)
        }
        // A model of the local hive's directories, named by its id before the hive imported it.
        if case .catalogID(let id) = submission.task.reference, !registry.allEntries().contains(where: { $0.catalog.contains { $0.id == id } }),
            let path = localModelFiles()[id]
        {
            submission.requested = submission.requested ?? id
            submission.task = try TaskRequest(model: "file:" + path, hive: submission.task.hive, inference: submission.task.inference)
        }
        let task = submission.task
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
        if let hive = task.hive, registry.entry(hive) == nil {
            throw RbeeError(.hiveNotFound, "no hive named \(hive) is registered", details: ["hive": .string(hive)])
        }
        try await ensureLocalHive()
        let fetchable = if case .catalogID = task.reference { false } else { true }
        let want = PlacementStateMachine.Want(
            modelID: task.reference.derivedID, modelRef: task.model, fetchable: fetchable, hive: task.hive, correlationID: context.correlationID,
            deadline: deadlineHeader)
        let id = "task-" + String(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16))
        let registration = try tasks.register(id)
        let placement = try scheduler.admit(want)
        metrics.taskStarted()
        let queenTask = QueenTask(
            id: id, model: task.model, want: want, request: task.inference, correlationID: context.correlationID, deadlineHeader: deadlineHeader,
            deadline: deadline, arrivedAt: .now)
        context.logger.info("task accepted", metadata: ["task_id": "\(id)", "model": "\(task.model)", "queue_position": "\(placement.position)"])
        let execution = TaskExecution(
            task: queenTask, placement: placement, registration: registration, scheduler: scheduler, hives: hives, http: http,
            token: configuration.token?.value, background: background, keepAliveInterval: configuration.keepAliveInterval,
            stallTimeout: configuration.stallTimeout, metrics: metrics, logger: context.logger)
        return (execution, submission)
    }

    func task(_ request: Request, _ context: RbeeRequestContext) async throws -> Response {
        var request = request
        let (execution, submission) = try await admit(&request, context, dialect: .native)
        var response =
            submission.task.inference.stream
            ? EventStreamResponse.make(request: request, context: context, frames: TaskFrames(outputs: execution.outputs)) { await execution.run() }
            : try await Self.whole(request, execution) {
                let whole = try await WholeTask.collect(execution.outputs)
                return Response.json(
                    TaskResult(
                        taskID: execution.task.id, model: whole.model, hive: whole.hive, workerID: whole.workerID, text: whole.text,
                        reasoning: whole.reasoning, toolCalls: whole.toolCalls, stats: whole.stats))
            }
        response.headers[Self.taskIDHeader] = execution.task.id
        return response
    }

    /// llama-server's `/apply-template`: the prompt a chat request's `messages` become on the
    /// worker that would serve it (placed, and started if need be, as the chat would be), without
    /// generating. Users debug templates with it.
    func applyTemplate(_ request: Request, _ context: RbeeRequestContext) async throws -> Response {
        var request = request
        var (execution, _) = try await admit(&request, context, dialect: .chat)
        execution.work = .templateRendering
        var response = try await Self.whole(request, execution) { [outputs = execution.outputs] in
            Response.json(AppliedTemplate(prompt: try await WholeTask.collect(outputs).text))
        }
        response.headers[Self.taskIDHeader] = execution.task.id
        return response
    }

    /// A `stream: false` answer: the task runs while `collect` gathers its outputs; a client that
    /// goes away meanwhile cancels it.
    static func whole(_ request: Request, _ execution: TaskExecution, collect: @escaping @Sendable () async throws -> Response) async throws
        -> Response
    {
        // Disconnect detection consumes the request side: the connection closes after the answer,
        // which says so, error or not.
        do {
            var response = try await request.body.consumeWithCancellationOnInboundClose { _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await execution.run() }
                    let response = try await collect()
                    try await group.waitForAll()
                    return response
                }
            }
            response.headers[.connection] = "close"
            return response
        } catch {
            throw ConnectionSpentError(error)
        }
    }

    /// The whole answer of a `stream: false` task.
    struct TaskResult: Encodable, Sendable {
        var taskID: String
        var model: String
        var hive: String
        var workerID: String
        var text: String
        var reasoning = ""
        var toolCalls: [ToolCall] = []
        var stats: GenerationStats

        enum CodingKeys: String, CodingKey {
            case model, hive, text
            case taskID = "task_id"
            case workerID = "worker_id"
            case reasoning = "reasoning_content"
            case toolCalls = "tool_calls"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(taskID, forKey: .taskID)
            try container.encode(model, forKey: .model)
            try container.encode(hive, forKey: .hive)
            try container.encode(workerID, forKey: .workerID)
            try container.encode(text, forKey: .text)
            if !reasoning.isEmpty { try container.encode(reasoning, forKey: .reasoning) }
            if !toolCalls.isEmpty { try container.encode(toolCalls, forKey: .toolCalls) }
            try stats.encode(to: encoder)
        }
    }

    /// `GET /v1/aliases`.
    struct ModelAliases: Encodable, Sendable {
        var aliases: [String: String]
    }

    /// The `.gguf` files of the local hive's model directories, by the id a `file:` reference to
    /// each derives.
    func localModelFiles() -> [String: String] {
        guard configuration.startLocalHive else { return [:] }
        var files: [String: String] = [:]
        for directory in configuration.localHiveModelDirectories {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            for name in names.sorted() where name.hasSuffix(".gguf") {
                let path = (directory as NSString).appendingPathComponent(name)
                guard let reference = try? ModelReference(parsing: "file:" + path) else { continue }
                files[reference.derivedID] = files[reference.derivedID] ?? path
            }
        }
        return files
    }

    static func parseDeadline(_ value: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: value) { return date }
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.date(from: value)
    }

    // MARK: Models

    /// Starts this queen's local hive when work arrives and no hive is registered, or when the
    /// registry still names the local hive of an earlier run: that one ended with its queen (and
    /// its port is another now), so an entry kept from then must not take work. Once started, this
    /// returns at once.
    func ensureLocalHive() async throws(RbeeError) {
        guard let localHive, registry.isEmpty || registry.entry(LocalHive.name) != nil else { return }
        try await localHive.ensure()
        scheduler.hivesChanged()
    }

    /// `POST /v1/models/pull`: the chosen hive's download progress, labelled, then `[DONE]`.
    func pull(_ request: Request, _ context: RbeeRequestContext) async throws -> Response {
        var request = request
        let body = try await request.decodeBody(as: PullRequest.self, context: context)
        let reference = try ModelReference(parsing: body.model)
        try await ensureLocalHive()
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
        let deadline = request.headers[Self.deadlineHeader]
        let started = try await hives.download(
            DownloadRequest(modelRef: body.model), hiveURL: target.record.url, correlationID: context.correlationID, deadline: deadline)
        let (frames, continuation) = AsyncStream.makeStream(of: String.self)
        let client = hives.client(correlationID: context.correlationID, deadline: deadline)
        let progressURL = target.record.url + "/v1/models/download/progress?id=" + (started.downloadID ?? "")
        return EventStreamResponse.make(request: request, context: context, frames: frames) {
            defer {
                continuation.yield(SSE.done)
                continuation.finish()
            }
            func send(_ progress: DownloadProgress) { continuation.yield(SSE.frame(PullEvent(hive: hive, model: started.modelID, progress: progress))) }
            guard started.status == .downloading else {
                await scheduler.refreshCatalog(hive: hive, url: target.record.url, correlationID: context.correlationID)
                return send(.complete(localPath: started.localPath ?? "", sha256: "", sizeBytes: 0))
            }
            do {
                for try await message in try await client.stream(.GET, progressURL).events(of: DownloadProgress.self) {
                    switch message {
                    case .comment: continuation.yield(SSE.keepAlive)
                    case .event(let progress):
                        // The model list has the model by the time the client reads `complete`.
                        if case .complete = progress {
                            await scheduler.refreshCatalog(hive: hive, url: target.record.url, correlationID: context.correlationID)
                        }
                        send(progress)
                        if progress.isTerminal { return }
                    }
                }
                send(.failed(RbeeError(.hiveUnreachable, "hive \(hive) ended the progress stream early")))
            } catch {
                guard !Task.isCancelled else { return }
                send(.failed((error as? RbeeError) ?? RbeeError(.hiveUnreachable, "hive \(hive): \(error)")))
            }
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
            if let catalog = try? await hives.catalog(hiveURL: hive.record.url, correlationID: context.correlationID) {
                registry.updateCatalog(hive.record.name, catalog.models, version: catalog.version)
            }
        }
        scheduler.hivesChanged()
        return Response(status: .noContent)
    }
}

extension QueenRoutes {
    /// What `PUT`/`DELETE /v1/models/{id}/template` answers.
    struct TemplateChange: Encodable, Sendable {
        var model: String
        var hives: [String]
        var chatTemplateSHA256: String?
        var workersRestarted: [String]

        enum CodingKeys: String, CodingKey {
            case model, hives
            case chatTemplateSHA256 = "chat_template_sha256"
            case workersRestarted = "workers_restarted"
        }
    }

    /// A model's chat template on every online hive that has it (or `?hive=`): kept in each hive's
    /// catalog for every later worker. The model's running workers are stopped (their requests in
    /// flight get the drain grace), so the next request starts one with the new template.
    func setTemplate(_ request: Request, _ context: RbeeRequestContext, clear: Bool = false) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        let only = request.uri.queryParameters["hive"].map(String.init)
        var template: String?
        if !clear {
            var request = request
            template = try await request.decodeBody(as: ChatTemplateUpdate.self, context: context).validated()
        }
        let holders = registry.online().filter { $0.record.models.contains(id) && (only == nil || $0.record.name == only) }
        guard !holders.isEmpty else {
            throw RbeeError(.modelNotFound, "no online hive has the model \(id)", details: ["model": .string(id)])
        }
        var sha256: String?
        for hive in holders {
            let info = try await hives.setChatTemplate(id, template, hiveURL: hive.record.url, correlationID: context.correlationID)
            sha256 = info.chatTemplateSHA256
            if let catalog = try? await hives.catalog(hiveURL: hive.record.url, correlationID: context.correlationID) {
                registry.updateCatalog(hive.record.name, catalog.models, version: catalog.version)
            }
        }
        let names = Set(holders.map(\.record.name))
        var restarted: [String] = []
        for hive in holders {
            let stale = scheduler.list().filter { $0.model == id && $0.hive == hive.record.name }
            for worker in stale {
                try? await hives.stopWorker(worker.workerID, hiveURL: hive.record.url, correlationID: context.correlationID)
                restarted.append(worker.workerID)
            }
            // The hive's list now shows them stopping: no new request goes to them.
            if !stale.isEmpty, let listed = try? await hives.workers(hiveURL: hive.record.url, correlationID: context.correlationID) {
                scheduler.workersReported(hive: hive.record.name, workers: listed)
            }
        }
        scheduler.hivesChanged()
        context.logger.info(
            clear ? "chat template cleared" : "chat template set",
            metadata: ["model": "\(id)", "hives": "\(names.sorted())", "workers_restarted": "\(restarted)"])
        return .json(TemplateChange(model: id, hives: names.sorted(), chatTemplateSHA256: sha256, workersRestarted: restarted))
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
