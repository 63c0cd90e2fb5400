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
    let startedAt = ContinuousClock.now

    func register(on router: Router<RbeeRequestContext>) {
        router.get("/health") { _, _ in try await health() }
        router.get("/v1/devices") { _, _ in Response.json(await DeviceInventory.detect()) }
        router.post("/v1/models/download") { request, _ in try await download(request) }
        router.get("/v1/models/download/progress") { request, _ in try progress(request) }
        router.get("/v1/models") { _, _ in Response.json(ModelList(models: try await provisioner.catalogCall { try await provisioner.catalog.list() })) }
        router.get("/v1/models/{id}") { _, context in try await model(context) }
        router.delete("/v1/models/{id}") { _, context in try await removeModel(context) }
        router.post("/v1/workers/spawn") { request, _ in
            let body: WorkerSpawnRequest = try await decodeBody(request)
            return Response.json(try await supervisor.spawn(body), status: .accepted)
        }
        router.get("/v1/workers") { _, _ in Response.json(WorkerList(workers: supervisor.list())) }
        router.delete("/v1/workers/{id}") { _, context in
            let id = context.parameters.get("id") ?? ""
            guard await supervisor.stop(id, reason: "DELETE /v1/workers/\(id)") else {
                throw RbeeError(.workerNotFound, "no worker \(id) in this hive", details: ["worker_id": .string(id)])
            }
            supervisor.remove(id)
            return Response(status: .noContent)
        }
        router.post("/v1/workers/ready") { request, _ in
            let report: WorkerReadyReport = try await decodeBody(request)
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
        router.post("/v1/workers/heartbeat") { request, _ in
            let beat: WorkerHeartbeat = try await decodeBody(request)
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
                    byteBuffer: ByteBuffer(string: metrics.render(downloads: provisioner.tracker.counts(), workers: supervisor.list()))))
        }
    }

    struct ModelList: Codable, Sendable {
        var models: [ModelInfo]
    }

    struct WorkerList: Codable, Sendable {
        var workers: [HiveWorkerInfo]
    }

    /// Decodes a small JSON body; a malformed one is a 400 naming the problem.
    func decodeBody<T: Decodable>(_ request: Request) async throws -> T {
        var request = request
        let body = try await request.collectBody(upTo: 64 * 1024)
        do {
            return try JSONDecoder().decode(T.self, from: body)
        } catch let DecodingError.keyNotFound(key, _) {
            throw RbeeError.invalid([.init(field: key.stringValue, message: "required")])
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw RbeeError.invalid([.init(field: context.codingPath.map(\.stringValue).joined(separator: "."), message: "has the wrong type")])
        } catch {
            throw RbeeError.invalid([.init(field: "body", message: "is not valid JSON")])
        }
    }

    func health() async throws -> Response {
        let models = (try? await provisioner.catalog.list().count) ?? -1
        return .json(
            HiveHealth(
                status: models >= 0 ? "ok" : "degraded", uptimeS: (ContinuousClock.now - startedAt).milliseconds / 1000, models: max(models, 0)))
    }

    func download(_ request: Request) async throws -> Response {
        var request = request
        let body = try await request.collectBody(upTo: 64 * 1024)
        let json: JSONValue
        do {
            json = try JSONDecoder().decode(JSONValue.self, from: body)
        } catch {
            throw RbeeError.invalid([.init(field: "body", message: "is not valid JSON")])
        }
        guard case .object(let fields) = json else {
            throw RbeeError.invalid([.init(field: "body", message: "must be a JSON object")])
        }
        var errors: [RbeeError.FieldError] = []
        guard case .string(let reference)? = fields["model_ref"] else {
            errors.append(.init(field: "model_ref", message: "required: a string"))
            throw RbeeError.invalid(errors)
        }
        var sha256: String?
        switch fields["sha256"] {
        case nil, .null?: break
        case .string(let value)?: sha256 = value
        default: throw RbeeError.invalid([.init(field: "sha256", message: "must be a string")])
        }
        let started = try await provisioner.request(DownloadRequest(modelRef: reference, sha256: sha256))
        return .json(started, status: started.status == .cached ? .ok : .accepted)
    }

    func progress(_ request: Request) throws -> Response {
        guard let id = request.uri.queryParameters["id"].map(String.init), Validation.isValidID(id) else {
            throw RbeeError.invalid([.init(field: "id", message: "required: a download id")])
        }
        guard let events = provisioner.tracker.subscribe(id) else {
            throw RbeeError(.notFound, "no download \(id) (unknown, or finished more than 10 minutes ago)", details: ["download_id": .string(id)])
        }
        return EventStreamResponse.make(request: request, keepAlive: configuration.keepAliveInterval, frames: ProgressFrames(events))
    }

    func model(_ context: RbeeRequestContext) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        guard let info = try await provisioner.catalogCall({ try await provisioner.catalog.model(id: id) }) else {
            throw RbeeError(.modelNotFound, "no model \(id) in this hive's catalog", details: ["model_id": .string(id)])
        }
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

