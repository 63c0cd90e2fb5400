import AsyncHTTPClient
import Foundation
import Logging
import RbeeAPI
import RbeeHTTP

/// Turns a model reference into a catalogued file: a cache hit, an imported local file, or a
/// download followed through the tracker.
public final class ModelProvisioner: Sendable {
    public let catalog: ModelCatalog
    public let tracker: DownloadTracker
    let downloader: ModelDownloader
    let settings: DownloadSettings
    /// Directories `file:` references may point into (symlinks resolved first).
    let allowedDirectories: [String]
    private let logger: Logger
    /// Where the sha256 of imported files is computed, after they are catalogued.
    let background: BackgroundTasks

    public init(
        catalog: ModelCatalog, settings: DownloadSettings, extraModelDirectories: [String] = [], client: HTTPClient = .rbee,
        logger: Logger, background: BackgroundTasks = BackgroundTasks(), metrics: HiveMetrics = HiveMetrics()
    ) {
        self.catalog = catalog
        self.background = background
        self.tracker = DownloadTracker(onEnd: { metrics.recordDownload($0) })
        self.settings = settings
        self.logger = logger
        self.allowedDirectories = ([catalog.modelDirectory] + extraModelDirectories).map { Self.resolved($0) }
        self.downloader = ModelDownloader(client: client, settings: settings, catalog: catalog, logger: logger, onBytes: { metrics.recordBytes($0) })
    }

    /// `POST /v1/models/download`: answers at once with `cached` or a download to follow.
    /// `logger` is the request's (its records carry its correlation id); a download it starts
    /// logs with it.
    public func request(_ body: DownloadRequest, logger: Logger? = nil) async throws(RbeeError) -> DownloadStarted {
        let logger = logger ?? self.logger
        let reference = try ModelReference(parsing: body.modelRef)
        if let sha256 = body.sha256, !(sha256.count == 64 && sha256.allSatisfy(\.isHexDigit)) {
            throw RbeeError.invalid([.init(field: "sha256", message: "must be 64 hexadecimal characters")])
        }
        switch reference {
        case .catalogID(let id):
            guard let info = try await catalogCall({ try await self.catalog.model(id: id) }) else {
                throw RbeeError(.modelNotFound, "no model \(id) in this hive's catalog", details: ["model_id": .string(id)])
            }
            return DownloadStarted(downloadID: nil, modelID: info.id, status: .cached, localPath: info.localPath)
        case .file(let path):
            return try await importFile(path: path, reference: reference, expectedSHA256: body.sha256)
        case .huggingFace, .url:
            return try await download(reference, expectedSHA256: body.sha256?.lowercased(), logger: logger)
        }
    }

    private func download(_ reference: ModelReference, expectedSHA256: String?, logger: Logger) async throws(RbeeError) -> DownloadStarted {
        let source = reference.description
        if let info = try await catalogCall({ try await self.catalog.model(sourceRef: source) }),
            FileManager.default.fileExists(atPath: info.localPath)
        {
            return DownloadStarted(downloadID: nil, modelID: info.id, status: .cached, localPath: info.localPath)
        }
        var id = reference.derivedID
        let derived = id
        if let taken = try await catalogCall({ try await self.catalog.model(id: derived) }), taken.sourceRef != source {
            id = String(id.prefix(55)) + "-" + String(source.utf8.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }, radix: 16)
        }
        var headers: [String: String] = [:]
        let url: String
        switch reference {
        case .huggingFace(let organization, let repository, let revision, let file):
            url = "\(settings.hfEndpoint)/\(organization)/\(repository)/resolve/\(revision ?? "main")/\(file)"
            if let token = settings.hfToken { headers["Authorization"] = "Bearer \(token)" }
        case .url(let raw):
            url = raw
        default:
            preconditionFailure("only remote references are downloaded")
        }
        let plan = DownloadPlan(
            modelID: id, sourceRef: source, url: url, headers: headers, expectedSHA256: expectedSHA256,
            destination: catalog.modelDirectory + "/" + id + ".gguf", logger: logger)
        // A new download is sized first, so one that cannot fit is refused before its first byte,
        // and its first frame says how far a partial file from an earlier run already got.
        var initial = DownloadProgress.downloading(bytesDownloaded: 0, bytesTotal: nil, speedMBps: 0, etaS: nil)
        if tracker.running(modelID: id) == nil {
            let partialPath = plan.destination + ".partial"
            let onDisk = ((try? FileManager.default.attributesOfItem(atPath: partialPath)[.size]) as? Int) ?? 0
            let total = await downloader.announcedSize(url: url, headers: headers)
            if let total {
                do {
                    try ModelDownloader.requireDisk(total - min(onDisk, total), in: catalog.modelDirectory)
                } catch {
                    logger.warning("download refused", metadata: ["model": "\(id)", "error": "\(error)"])
                    throw error
                }
            }
            initial = .downloading(bytesDownloaded: onDisk, bytesTotal: total, speedMBps: 0, etaS: nil)
        }
        let (downloadID, started) = tracker.start(modelID: id, initial: initial) { [downloader] report in
            await downloader.run(plan, report: report)
        }
        if started { logger.info("download started", metadata: ["model": "\(id)", "download_id": "\(downloadID)", "url": "\(url)"]) }
        return DownloadStarted(downloadID: downloadID, modelID: id, status: .downloading)
    }

    /// A local file: catalogued at once from its header and size, so a spawn checks memory and
    /// answers without reading the file. Its sha256 is computed in the background; when the
    /// client gave one to check, the import is a job to follow like a download (`verifying` it),
    /// and the model is catalogued only once it matches.
    private func importFile(path: String, reference: ModelReference, expectedSHA256: String?) async throws(RbeeError) -> DownloadStarted {
        let real = Self.resolved(path)
        guard allowedDirectories.contains(where: { real.hasPrefix($0 + "/") }) else {
            throw RbeeError(
                .invalidModelRef, "file: references must point inside the hive's model directories",
                details: ["path": .string(path), "model_directories": .array(allowedDirectories.map { .string($0) })])
        }
        guard FileManager.default.fileExists(atPath: real) else {
            throw RbeeError(.modelNotFound, "no file at \(path)", details: ["path": .string(path)])
        }
        if let info = try await catalogCall({ try await self.catalog.model(sourceRef: reference.description) }),
            expectedSHA256 == nil || info.sha256 == expectedSHA256?.lowercased()
        {
            return DownloadStarted(downloadID: nil, modelID: info.id, status: .cached, localPath: info.localPath)
        }
        let info: ModelInfo
        do {
            info = try ModelCatalog.describe(path: real, id: reference.derivedID, sourceRef: reference.description)
        } catch {
            throw RbeeError(.invalidModelRef, "\(path) is not a usable GGUF model: \(error)", details: ["path": .string(path)])
        }
        guard let expected = expectedSHA256?.lowercased() else {
            try await catalogCall { try await self.catalog.add(info) }
            hashInBackground(info)
            return DownloadStarted(downloadID: nil, modelID: info.id, status: .cached, localPath: info.localPath)
        }
        let (downloadID, _) = tracker.start(
            modelID: info.id, initial: .downloading(bytesDownloaded: 0, bytesTotal: info.sizeBytes, speedMBps: 0, etaS: nil)
        ) { [catalog, logger] report in
            do {
                let digest = try await FileHasher.sha256(path: real) { hashed in
                    report(.downloading(bytesDownloaded: hashed, bytesTotal: info.sizeBytes, speedMBps: 0, etaS: nil))
                }
                guard digest == expected else {
                    return .failed(
                        RbeeError(
                            .checksumMismatch, "sha256 of \(path) is \(digest), expected \(expected)",
                            details: ["expected": .string(expected), "actual": .string(digest)]))
                }
                var verified = info
                verified.sha256 = digest
                try await catalog.add(verified)
                return .complete(localPath: real, sha256: digest, sizeBytes: info.sizeBytes)
            } catch is CancellationError {
                return .failed(RbeeError(.cancelled, "the hive stopped while \(path) was being verified"))
            } catch {
                logger.warning("import failed", metadata: ["path": "\(path)", "error": "\(error)"])
                return .failed(RbeeError(.unavailable, "cannot import \(path): \(error)"))
            }
        }
        return DownloadStarted(downloadID: downloadID, modelID: info.id, status: .downloading)
    }

    /// Computes a catalogued model's sha256 in the hive's background tasks.
    func hashInBackground(_ info: ModelInfo) {
        background.submit { [catalog, logger] in
            do {
                let digest = try await FileHasher.sha256(path: info.localPath)
                try await catalog.setSHA256(id: info.id, digest)
            } catch is CancellationError {
                return
            } catch {
                logger.warning("could not hash a model", metadata: ["model": "\(info.id)", "error": "\(error)"])
            }
        }
    }

    /// Hashes the catalogued models whose sha256 is not known yet (imported, or found by a rescan).
    func hashPendingModels() async {
        for info in (try? await catalog.list()) ?? [] where info.sha256.isEmpty { hashInBackground(info) }
    }

    /// Catalog failures (an unreadable database) answer 503, never crash the hive.
    func catalogCall<T: Sendable>(_ body: @Sendable () async throws -> T) async throws(RbeeError) -> T {
        do {
            return try await body()
        } catch let error as RbeeError {
            throw error
        } catch {
            throw RbeeError(.unavailable, "the model catalog is unavailable: \(error)", retryAfter: 5)
        }
    }

    static func resolved(_ path: String) -> String {
        URL(fileURLWithPath: path).resolvingSymlinksInPath().standardizedFileURL.path
    }
}
