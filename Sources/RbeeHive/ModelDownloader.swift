import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import RbeeAPI
import RbeeGGUF
import Synchronization

/// Settings of the hive's downloads; tests shorten the timers.
public struct DownloadSettings: Sendable {
    public var attempts = 6
    public var initialBackoff: Duration = .milliseconds(500)
    /// No byte for this long ends the attempt (`DOWNLOAD_TIMEOUT` once attempts run out).
    public var stallTimeout: Duration = .seconds(60)
    public var progressInterval: Duration = .milliseconds(500)
    public var hfEndpoint = "https://huggingface.co"
    public var hfToken: String?

    public init() {}
}

/// What to fetch and where it goes.
struct DownloadPlan: Sendable {
    let modelID: String
    let sourceRef: String
    let url: String
    let headers: [String: String]
    let expectedSHA256: String?
    let destination: String
    /// The log of the request that started the download (its correlation id).
    let logger: Logger
}

/// Fetches one model: streamed into `<destination>.partial` and hashed as it arrives, resumed with
/// `Range` after a dropped connection (or a hive restart), retried with exponential backoff,
/// verified (size, sha256, GGUF header) and only then renamed to its final name and catalogued.
/// A transfer that fails its checksum is fetched once more from zero (a corrupted transfer is
/// usually not repeated) before the download ends with `CHECKSUM_MISMATCH`.
struct ModelDownloader: Sendable {
    let client: HTTPClient
    let settings: DownloadSettings
    let catalog: ModelCatalog
    let logger: Logger
    let onBytes: @Sendable (Int) -> Void

    /// A failure worth another attempt.
    private struct Transient: Error {
        let error: RbeeError
    }

    func run(_ plan: DownloadPlan, report: @escaping @Sendable (DownloadProgress) -> Void) async -> DownloadProgress {
        let partial = PartialFile(path: plan.destination + ".partial")
        var lastError = RbeeError(.downloadFailed, "the download did not start")
        var attempt = 0
        var transientFailures = 0
        var checksumRetried = false
        while transientFailures < max(1, settings.attempts) {
            attempt += 1
            if Task.isCancelled {
                await partial.close()
                return .failed(RbeeError(.cancelled, "the download of \(plan.modelID) was cancelled (the hive is stopping)"))
            }
            if attempt > 1 {
                plan.logger.info("retrying download", metadata: ["model": "\(plan.modelID)", "attempt": "\(attempt)", "error": "\(lastError)"])
            }
            if transientFailures > 0, lastError.code != .checksumMismatch {
                try? await Task.sleep(for: settings.initialBackoff * (1 << min(transientFailures - 1, 10)))
            }
            do {
                let (size, serverSHA256) = try await fetch(plan, into: partial, attempt: attempt, report: report)
                return try await finalize(plan, partial: partial, size: size, serverSHA256: serverSHA256)
            } catch let transient as Transient {
                transientFailures += 1
                lastError = transient.error
            } catch let error as RbeeError where error.code == .checksumMismatch && !checksumRetried {
                // finalize removed the partial file: the next attempt starts from zero.
                checksumRetried = true
                lastError = error
            } catch let error as RbeeError {
                await partial.close()
                // A partial file with bytes in it stays for a later resume after INSUFFICIENT_DISK.
                if error.code != .insufficientDisk || partial.size == 0 { try? FileManager.default.removeItem(atPath: partial.path) }
                plan.logger.warning("download failed", metadata: ["model": "\(plan.modelID)", "error": "\(error)", "attempts": "\(attempt)"])
                var error = error
                if attempt > 1 { error.message += " (after \(attempt) attempts)" }
                return .failed(error)
            } catch {
                transientFailures += 1
                lastError = RbeeError(.downloadFailed, "download of \(plan.modelID) failed: \(error)")
            }
        }
        // The partial file stays: a later request resumes from it.
        await partial.close()
        if Task.isCancelled {
            return .failed(RbeeError(.cancelled, "the download of \(plan.modelID) was cancelled (the hive is stopping)"))
        }
        plan.logger.warning("download gave up", metadata: ["model": "\(plan.modelID)", "error": "\(lastError)"])
        var error = lastError
        error.message += " (after \(attempt) attempts)"
        return .failed(error)
    }

    /// One attempt; returns the final size and the sha256 the server announced, if any.
    private func fetch(_ plan: DownloadPlan, into partial: PartialFile, attempt: Int, report: @escaping @Sendable (DownloadProgress) -> Void)
        async throws -> (Int, String?)
    {
        try await partial.open()
        var offset = partial.size
        var request = HTTPClientRequest(url: plan.url)
        for (name, value) in plan.headers { request.headers.add(name: name, value: value) }
        if offset > 0 { request.headers.add(name: "Range", value: "bytes=\(offset)-") }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(Int64(max(1, settings.stallTimeout.components.seconds))))
        } catch {
            throw Transient(error: RbeeError(.downloadFailed, "cannot reach \(plan.url): \(error)"))
        }
        let details: [String: JSONValue] = ["url": .string(plan.url), "status": .number(Double(response.status.code))]
        switch response.status.code {
        case 200:
            if offset > 0 {
                try await partial.truncate()
                offset = 0
            }
        case 206:
            if let start = Self.contentRangeStart(response.headers), start != offset {
                try await partial.truncate()
                throw Transient(error: RbeeError(.downloadFailed, "the server resumed at byte \(start), not \(offset)"))
            }
        case 416:
            try await partial.truncate()
            throw Transient(error: RbeeError(.downloadFailed, "the server refused the range from byte \(offset)"))
        case 404:
            throw RbeeError(.modelNotFound, "no model at \(plan.url) (404)", details: details)
        case 401, 403:
            throw RbeeError(
                .downloadFailed,
                "access to \(plan.url) was refused (\(response.status.code)); set HF_TOKEN to a token that may read this repository",
                details: details)
        case 408, 429, 500...599:
            throw Transient(error: RbeeError(.downloadFailed, "the server answered \(response.status.code)", details: details))
        default:
            throw RbeeError(.downloadFailed, "unexpected answer \(response.status.code) from \(plan.url)", details: details)
        }

        let total = Self.totalSize(response.headers, offset: offset)
        if let total { try Self.requireDisk(total - offset, in: catalog.modelDirectory) }
        report(.downloading(bytesDownloaded: offset, bytesTotal: total, speedMBps: 0, etaS: nil, attempt: attempt))

        let started = ContinuousClock.now
        let lastByte = LastByteClock()
        let resumedAt = offset
        var received = 0
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Stall watchdog: the body task is cancelled when no byte came for too long.
                    while true {
                        try await Task.sleep(for: settings.stallTimeout / 4)
                        if ContinuousClock.now - lastByte.time.withLock({ $0 }) > settings.stallTimeout {
                            throw Transient(error: RbeeError(.downloadTimeout, "no data from \(plan.url) for \(settings.stallTimeout)"))
                        }
                    }
                }
                group.addTask {
                    var buffer = Data()
                    var lastReport = ContinuousClock.now
                    var lastReportedBytes = resumedAt
                    var localReceived = 0
                    do {
                        for try await chunk in response.body {
                            lastByte.time.withLock { $0 = .now }
                            buffer.append(contentsOf: chunk.readableBytesView)
                            localReceived += chunk.readableBytes
                            onBytes(chunk.readableBytes)
                            if buffer.count >= 1 << 20 {
                                try await partial.append(buffer)
                                buffer.removeAll(keepingCapacity: true)
                            }
                            let done = resumedAt + localReceived
                            let now = ContinuousClock.now
                            let stepBytes = max(1, (total ?? Int.max) / 50)
                            if now - lastReport >= settings.progressInterval || done - lastReportedBytes >= stepBytes {
                                let elapsed = max((now - started).milliseconds / 1000, 0.001)
                                let speed = Double(localReceived) / elapsed
                                report(
                                    .downloading(
                                        bytesDownloaded: done, bytesTotal: total, speedMBps: speed / 1_000_000,
                                        etaS: total.map { Double($0 - done) / max(speed, 1) }, attempt: attempt))
                                lastReport = now
                                lastReportedBytes = done
                            }
                        }
                    } catch {
                        // Keep what arrived before the break: the next attempt resumes after it.
                        if !buffer.isEmpty { try? await partial.append(buffer) }
                        throw error
                    }
                    if !buffer.isEmpty { try await partial.append(buffer) }
                }
                try await group.next()
                group.cancelAll()
            }
            received = partial.size - offset
        } catch let transient as Transient {
            throw transient
        } catch {
            throw Transient(error: RbeeError(.downloadFailed, "the connection to \(plan.url) broke: \(error)"))
        }
        let size = offset + received
        if let total, size != total {
            throw Transient(error: RbeeError(.downloadFailed, "the connection closed at byte \(size) of \(total)"))
        }
        return (size, Self.announcedSHA256(response.headers))
    }

    private func finalize(_ plan: DownloadPlan, partial: PartialFile, size: Int, serverSHA256: String?) async throws -> DownloadProgress {
        let digest = try await partial.finish()
        if let expected = (plan.expectedSHA256 ?? serverSHA256)?.lowercased(), expected != digest {
            try? FileManager.default.removeItem(atPath: partial.path)
            throw RbeeError(
                .checksumMismatch, "sha256 of the download is \(digest), expected \(expected)",
                details: ["expected": .string(expected), "actual": .string(digest)])
        }
        do {
            _ = try GGUFFile(path: partial.path)
        } catch {
            try? FileManager.default.removeItem(atPath: partial.path)
            throw RbeeError(.downloadFailed, "\(plan.url) is not a usable GGUF model: \(error.message)")
        }
        try? FileManager.default.removeItem(atPath: plan.destination)
        try FileManager.default.moveItem(atPath: partial.path, toPath: plan.destination)
        let info = try ModelCatalog.describe(path: plan.destination, id: plan.modelID, sourceRef: plan.sourceRef, sha256: digest)
        try await catalog.add(info)
        plan.logger.info("download complete", metadata: ["model": "\(plan.modelID)", "bytes": "\(size)"])
        return .complete(localPath: plan.destination, sha256: digest, sizeBytes: size)
    }

    /// When the last byte arrived, shared by the body reader and the stall watchdog.
    private final class LastByteClock: Sendable {
        let time = Mutex(ContinuousClock.now)
    }

    static func contentRangeStart(_ headers: HTTPHeaders) -> Int? {
        // "bytes START-END/TOTAL"
        guard let value = headers.first(name: "Content-Range"), let range = value.split(separator: " ").last else { return nil }
        return range.split(separator: "-").first.flatMap { Int($0) }
    }

    static func totalSize(_ headers: HTTPHeaders, offset: Int) -> Int? {
        if let value = headers.first(name: "Content-Range"), let total = value.split(separator: "/").last.flatMap({ Int($0) }) {
            return total
        }
        return headers.first(name: "Content-Length").flatMap { Int($0) }.map { $0 + offset }
    }

    /// Hugging Face sends an LFS file's sha256 as its (linked) ETag.
    static func announcedSHA256(_ headers: HTTPHeaders) -> String? {
        for name in ["X-Linked-Etag", "ETag"] {
            guard var value = headers.first(name: name) else { continue }
            value = value.replacingOccurrences(of: "W/", with: "").trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            if value.count == 64, value.allSatisfy(\.isHexDigit) { return value.lowercased() }
        }
        return nil
    }

    /// Throws `INSUFFICIENT_DISK` when `bytes` more do not fit in `directory`'s file system.
    static func requireDisk(_ bytes: Int, in directory: String) throws(RbeeError) {
        guard let free = freeBytes(atPath: directory), free < Int64(bytes) else { return }
        throw RbeeError(
            .insufficientDisk, "the model needs \(bytes) more bytes; \(free) are free in \(directory)",
            details: ["bytes_needed": .number(Double(bytes)), "bytes_free": .number(Double(free)), "path": .string(directory)])
    }

    /// The size a server announces for `url` without sending it (`HEAD`; Hugging Face names an
    /// LFS file's size in `X-Linked-Size` on the redirect), or nil when it will not say.
    func announcedSize(url: String, headers: [String: String]) async -> Int? {
        var request = HTTPClientRequest(url: url)
        request.method = .HEAD
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        guard let response = try? await client.execute(request, timeout: .seconds(10)) else { return nil }
        _ = try? await response.body.collect(upTo: 1 << 16)
        guard response.status.code == 200 else { return nil }
        return response.headers.first(name: "X-Linked-Size").flatMap { Int($0) } ?? response.headers.first(name: "Content-Length").flatMap { Int($0) }
    }

    static func freeBytes(atPath path: String) -> Int64? {
        (try? FileManager.default.attributesOfFileSystem(forPath: path)[.systemFreeSize] as? NSNumber)?.int64Value
    }
}
