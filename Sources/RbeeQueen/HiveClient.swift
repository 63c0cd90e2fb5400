import AsyncHTTPClient
import Foundation
import NIOHTTP1
import RbeeAPI
import RbeeHTTP

/// The queen's calls to hives (SPEC §3 "Hive"), with the queen's token on every one.
struct HiveClient: Sendable {
    let http: HTTPClient
    let token: String?

    func client(correlationID: String? = nil, deadline: String? = nil) -> RbeeClient {
        RbeeClient(http: http, token: token, correlationID: correlationID, deadline: deadline, unreachableCode: .hiveUnreachable)
    }

    struct WorkerList: Decodable { var workers: [HiveWorkerInfo] }
    /// A hive's catalog and its version (`HiveHeartbeat.catalogVersion`; nil from older hives).
    struct Catalog: Decodable {
        var models: [ModelInfo]
        var version: Int?

        enum CodingKeys: String, CodingKey {
            case models
            case version = "catalog_version"
        }
    }

    /// The hive's health. Every rbee program's `/health` has `{status, version, api_version}`: a
    /// peer answering those in another API version is a hive of another version (409
    /// `VERSION_MISMATCH` naming both), whatever else it says; one answering anything else is
    /// not rbee (502).
    func health(hiveURL: String, timeout: Duration = .seconds(5)) async throws(RbeeError) -> HiveHealth {
        struct Versions: Decodable {
            var status: String
            var version: String
            var apiVersion: Int
            enum CodingKeys: String, CodingKey {
                case status, version
                case apiVersion = "api_version"
            }
        }
        let client = client()
        let url = hiveURL + "/health"
        let data = try await client.call(.GET, url, timeout: timeout)
        guard let versions = try? JSONDecoder().decode(Versions.self, from: data) else { throw client.notRbee(url, body: data) }
        guard versions.apiVersion == RbeeVersion.apiVersion else {
            throw RbeeError(
                .versionMismatch,
                "the hive at \(hiveURL) is rbee \(versions.version) (API version \(versions.apiVersion)); this queen is rbee \(RbeeVersion.version) (API version \(RbeeVersion.apiVersion))",
                details: [
                    "hive_api_version": .number(Double(versions.apiVersion)), "queen_api_version": .number(Double(RbeeVersion.apiVersion)),
                    "hive_version": .string(versions.version), "queen_version": .string(RbeeVersion.version),
                ], status: 409)
        }
        guard let health = try? JSONDecoder().decode(HiveHealth.self, from: data) else { throw client.notRbee(url, body: data) }
        return health
    }

    func workers(hiveURL: String, correlationID: String? = nil, deadline: String? = nil) async throws(RbeeError) -> [HiveWorkerInfo] {
        try await client(correlationID: correlationID, deadline: deadline).call(.GET, hiveURL + "/v1/workers", as: WorkerList.self).workers
    }

    func catalog(hiveURL: String, correlationID: String? = nil) async throws(RbeeError) -> Catalog {
        try await client(correlationID: correlationID).call(.GET, hiveURL + "/v1/models", as: Catalog.self)
    }

    func spawn(_ request: WorkerSpawnRequest, hiveURL: String, correlationID: String? = nil, deadline: String? = nil) async throws(RbeeError)
        -> HiveWorkerInfo
    {
        let body = try encode(request)
        return try await client(correlationID: correlationID, deadline: deadline).call(
            .POST, hiveURL + "/v1/workers/spawn", json: body, timeout: .seconds(60), as: HiveWorkerInfo.self)
    }

    func stopWorker(_ id: String, hiveURL: String, correlationID: String?) async throws(RbeeError) {
        _ = try await client(correlationID: correlationID).call(.DELETE, hiveURL + "/v1/workers/" + id, timeout: .seconds(30))
    }

    /// The end of a worker's log, as text.
    func workerLog(_ id: String, tail: Int, hiveURL: String, correlationID: String?) async throws(RbeeError) -> Data {
        try await client(correlationID: correlationID).call(.GET, hiveURL + "/v1/workers/\(id)/logs?tail=\(tail)")
    }

    func download(_ request: DownloadRequest, hiveURL: String, correlationID: String?, deadline: String? = nil) async throws(RbeeError)
        -> DownloadStarted
    {
        try await client(correlationID: correlationID, deadline: deadline).call(
            .POST, hiveURL + "/v1/models/download", json: try encode(request), timeout: .seconds(60), as: DownloadStarted.self)
    }

    /// Sets (nil: clears) a model's chat template on a hive.
    func setChatTemplate(_ id: String, _ template: String?, hiveURL: String, correlationID: String?) async throws(RbeeError) -> ModelInfo {
        let url = hiveURL + "/v1/models/" + id + "/template"
        if let template {
            return try await client(correlationID: correlationID).call(.PUT, url, json: try encode(ChatTemplateUpdate(template: template)), as: ModelInfo.self)
        }
        return try await client(correlationID: correlationID).call(.DELETE, url, as: ModelInfo.self)
    }

    func removeModel(_ id: String, hiveURL: String, correlationID: String?) async throws(RbeeError) {
        _ = try await client(correlationID: correlationID).call(.DELETE, hiveURL + "/v1/models/" + id)
    }

    private func encode(_ value: some Encodable) throws(RbeeError) -> Data {
        do { return try JSONEncoder().encode(value) } catch { throw RbeeError(.internalError, "cannot encode a request: \(error)") }
    }
}
