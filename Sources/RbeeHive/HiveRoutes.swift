import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOFoundationCompat
import RbeeAPI
import RbeeHTTP

/// The hive's HTTP API (SPEC §3 "Hive"): models and downloads, devices, health.
struct HiveRoutes: Sendable {
    let configuration: HiveConfiguration
    let provisioner: ModelProvisioner
    let supervisor: WorkerSupervisor
    let metrics: HiveMetrics
    let shutdown: ShutdownSwitch
    let hiveID: String
    let startedAt = ContinuousClock.now

    func register(on router: Router<RbeeRequestContext>) {
        router.get("/health") { _, _ in try await health() }
        router.get("/v1/devices") { _, _ in Response.json(await DeviceInventory.detect(modelDirectory: provisioner.catalog.modelDirectory)) }
        router.post("/v1/models/download") { request, context in
            var request = request
            let body = try await request.decodeBody(as: DownloadRequest.self, context: context)
            let started = try await provisioner.request(body, logger: context.logger)
            return Response.json(started, status: started.status == .cached ? .ok : .accepted)
        }
        router.get("/v1/models/download/progress") { request, context in try progress(request, context) }
        router.get("/v1/models") { _, _ in
            let version = provisioner.catalog.version
            return Response.json(ModelList(models: try await provisioner.catalogCall { try await provisioner.catalog.list() }, catalogVersion: version))
        }
        router.get("/v1/models/{id}") { _, context in try await model(context) }
        router.delete("/v1/models/{id}") { _, context in try await removeModel(context) }
        router.put("/v1/models/{id}/template") { request, context in try await setTemplate(request, context) }
        router.delete("/v1/models/{id}/template") { request, context in try await setTemplate(request, context, clear: true) }
        router.post("/v1/workers/spawn") { request, context in
            var request = request
            let body = try await request.decodeBody(as: WorkerSpawnRequest.self, context: context)
            return Response.json(try await supervisor.spawn(body, logger: context.logger), status: .accepted)
        }
        router.get("/v1/workers") { _, _ in Response.json(WorkerList(workers: supervisor.list())) }
        router.delete("/v1/workers/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            // The stop goes on in the background; the list shows how it ended.
            guard let info = supervisor.requestStop(id, reason: .init(.requested, "DELETE /v1/workers/\(id)")) else {
                throw RbeeError(.workerNotFound, "no worker \(id) in this hive", details: ["worker_id": .string(id)])
            }
            return Response.json(info, status: .accepted)
        }
        router.get("/v1/workers/{id}/progress") { request, context in
            let id = context.parameters.get("id") ?? ""
            guard let events = supervisor.loadingProgress(id) else {
                throw RbeeError(.workerNotFound, "no worker \(id) in this hive", details: ["worker_id": .string(id)])
            }
            return EventStreamResponse.make(request: request, context: context, keepAlive: configuration.keepAliveInterval, frames: ProgressFrames(events))
        }
        router.get("/v1/workers/{id}/logs") { request, context in
            let id = context.parameters.get("id") ?? ""
            let bytes = request.uri.queryParameters["tail"].flatMap { Int($0) }.map { max(0, min($0, 16 << 20)) } ?? 65536
            guard let text = supervisor.log(id, bytes: bytes) else {
                throw RbeeError(.workerNotFound, "no log of a worker \(id) in this hive", details: ["worker_id": .string(id)])
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        router.post("/v1/workers/listening") { request, context in
            var request = request
            let report = try await request.decodeBody(as: WorkerListening.self, context: context)
            guard report.apiVersion == RbeeVersion.apiVersion else {
                throw RbeeError(
                    .versionMismatch, "worker \(report.workerID) speaks API version \(report.apiVersion); this hive speaks \(RbeeVersion.apiVersion)",
                    details: ["worker_api_version": .number(Double(report.apiVersion)), "hive_api_version": .number(Double(RbeeVersion.apiVersion))])
            }
            guard supervisor.listening(report) else {
                throw RbeeError(.workerNotFound, "no worker \(report.workerID) in this hive", details: ["worker_id": .string(report.workerID)])
            }
            return Response(status: .noContent)
        }
        router.post("/v1/workers/ready") { request, context in
            var request = request
            let report = try await request.decodeBody(as: WorkerReadyReport.self, context: context)
            if let version = report.apiVersion, version != RbeeVersion.apiVersion {
                throw RbeeError(
                    .versionMismatch, "worker \(report.workerID) speaks API version \(version); this hive speaks \(RbeeVersion.apiVersion)",
                    details: ["worker_api_version": .number(Double(version)), "hive_api_version": .number(Double(RbeeVersion.apiVersion))])
            }
            guard supervisor.ready(report) else {
                throw RbeeError(.workerNotFound, "no worker \(report.workerID) in this hive", details: ["worker_id": .string(report.workerID)])
            }
            return Response(status: .noContent)
        }
        router.post("/v1/workers/heartbeat") { request, context in
            var request = request
            let beat = try await request.decodeBody(as: WorkerHeartbeat.self, context: context)
            guard supervisor.heartbeat(beat) else {
                throw RbeeError(.workerNotFound, "no worker \(beat.workerID) in this hive", details: ["worker_id": .string(beat.workerID)])
            }
            return Response(status: .noContent)
        }
        router.post("/v1/shutdown") { _, context in
            context.logger.info("shutdown requested over HTTP")
            shutdown.request()
            return Response.json(["status": "stopping"], status: .accepted)
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                body: ResponseBody(
                    byteBuffer: ByteBuffer(string: metrics.render(downloadsActive: provisioner.tracker.counts().active, workers: supervisor.list()))))
        }
    }

    struct ModelList: Codable, Sendable {
        var models: [ModelInfo]
        var catalogVersion: Int

        enum CodingKeys: String, CodingKey {
            case models
            case catalogVersion = "catalog_version"
        }
    }

    struct WorkerList: Codable, Sendable {
        var workers: [HiveWorkerInfo]
    }

    func health() async throws -> Response {
        let models = (try? await provisioner.catalog.list().count) ?? -1
        return .json(
            HiveHealth(
                status: models >= 0 ? "ok" : "degraded", uptimeS: (ContinuousClock.now - startedAt).milliseconds / 1000, models: max(models, 0),
                hiveID: hiveID))
    }

    func progress(_ request: Request, _ context: RbeeRequestContext) throws -> Response {
        guard let id = request.uri.queryParameters["id"].map(String.init), Validation.isValidID(id) else {
            throw RbeeError.invalid([.init(field: "id", message: "required: a download id")])
        }
        guard let events = provisioner.tracker.subscribe(id) else {
            throw RbeeError(.notFound, "no download \(id) (unknown, or finished more than 10 minutes ago)", details: ["download_id": .string(id)])
        }
        return EventStreamResponse.make(request: request, context: context, keepAlive: configuration.keepAliveInterval, frames: ProgressFrames(events))
    }

    func model(_ context: RbeeRequestContext) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        guard let info = try await provisioner.catalogCall({ try await provisioner.catalog.model(id: id) }) else {
            throw RbeeError(.modelNotFound, "no model \(id) in this hive's catalog", details: ["model_id": .string(id)])
        }
        return .json(info)
    }

    /// `PUT /v1/models/{id}/template` sets the chat template every later worker of the model uses
    /// (as Ollama's Modelfile sets one); `DELETE` goes back to the GGUF's. Workers already running
    /// keep theirs; a template that does not parse fails the next worker's load (MODEL_LOAD_FAILED).
    func setTemplate(_ request: Request, _ context: RbeeRequestContext, clear: Bool = false) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        var template: String?
        if !clear {
            var request = request
            template = try await request.decodeBody(as: ChatTemplateUpdate.self, context: context).validated()
        }
        guard let info = try await provisioner.catalogCall({ [template] in try await provisioner.catalog.setChatTemplate(id: id, template) }) else {
            throw RbeeError(.modelNotFound, "no model \(id) in this hive's catalog", details: ["model_id": .string(id)])
        }
        context.logger.info(clear ? "chat template cleared" : "chat template set", metadata: ["model": "\(id)", "sha256": "\(info.chatTemplateSHA256 ?? "-")"])
        return .json(info)
    }

    func removeModel(_ context: RbeeRequestContext) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        guard try await provisioner.catalogCall({ try await provisioner.catalog.remove(id: id) }) != nil else {
            throw RbeeError(.modelNotFound, "no model \(id) in this hive's catalog", details: ["model_id": .string(id)])
        }
        context.logger.info("model removed", metadata: ["model": "\(id)"])
        return Response(status: .noContent)
    }
}

