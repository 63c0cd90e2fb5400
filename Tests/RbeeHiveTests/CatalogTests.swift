import Foundation
import Logging
import RbeeAPI
import RbeeHive
import RbeeTestSupport
import Testing

@Suite(.serialized) struct CatalogTests {
    /// Acceptance 3: a hive killed mid-download resumes from its partial file after a restart.
    @Test func aKilledHiveResumesItsDownloadAfterARestart() async throws {
        let binary = try #require(Self.hiveBinary(), "rbee-hive was not built next to the tests")
        let server = try await ModelServer.start(files: [modelURLPath: modelPath])
        server.set(.init(chunkDelay: .milliseconds(15)))
        let home = try temporaryHome()
        let port = Int.random(in: 40000..<50000)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--home", home, "--port", "\(port)", "--log-level", "error"]
        process.environment = ProcessInfo.processInfo.environment.merging(["HF_ENDPOINT": server.url]) { $1 }
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        let first = RunningHiveClient(baseURL: "http://127.0.0.1:\(port)")
        var started: DownloadStarted?
        for _ in 0..<100 where started == nil {
            started = try? await first.download(modelRef)
            if started == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let id = try #require(started?.downloadID)
        let partialPath = home + "/models/gemma-3-270m-q4_k_m.gguf.partial"
        let progressed = try await first.waitForProgress(id, atLeast: modelSize * 3 / 10)
        #expect(progressed)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let left = ((try? FileManager.default.attributesOfItem(atPath: partialPath)[.size]) as? Int) ?? 0
        #expect(left > modelSize / 4, "only \(left) bytes were left in the partial file")
        #expect(!FileManager.default.fileExists(atPath: home + "/models/gemma-3-270m-q4_k_m.gguf"))

        server.set(.init())
        let hive = try await RunningHive.start(home: home, server: server)
        let result = try await hive.downloadToEnd(modelRef)
        #expect(result == .complete(localPath: home + "/models/gemma-3-270m-q4_k_m.gguf", sha256: modelSHA256, sizeBytes: modelSize))
        let resumedAt = try #require(server.ranges.last.flatMap { Int($0.dropFirst(6).split(separator: "-").first ?? "") })
        #expect(resumedAt == left)
        try await hive.stop()
        await server.stop()
    }

    @Test func theCatalogListsGetsRemovesAndImports() async throws {
        let home = try temporaryHome()
        let imported = home + "/models/local-copy.gguf"
        try FileManager.default.createDirectory(atPath: home + "/models", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: imported, withDestinationPath: modelPath)
        let hive = try await RunningHive.start(home: home, server: nil) { $0.extraModelDirectories = [(modelPath as NSString).deletingLastPathComponent] }
        let (status, body) = try await hive.download("file:" + modelPath)
        #expect(status == .ok)
        let cached = try JSONDecoder().decode(DownloadStarted.self, from: body)
        #expect(cached.status == .cached)
        #expect(cached.modelID == "gemma-3-270m-q4_k_m")
        #expect(try await hive.download("file:" + imported).0 == .ok)

        let catalog = hive.service.provisioner.catalog
        let listed = try await catalog.list()
        #expect(listed.map(\.id) == ["local-copy", "gemma-3-270m-q4_k_m"])  // newest first
        #expect(listed.allSatisfy { $0.layerCount == 18 })
        // Imports are catalogued from their header at once; their sha256 follows from the background.
        try await waitUntil(.seconds(20)) { try await catalog.list().allSatisfy { $0.sha256 == modelSHA256 } }
        // With a sha256 to check, an import is a job to follow, which a wrong sha256 fails.
        let (checkStatus, checkBody) = try await hive.download("file:" + modelPath, sha256: String(repeating: "0", count: 64))
        #expect(checkStatus == .accepted)
        let check = try JSONDecoder().decode(DownloadStarted.self, from: checkBody)
        let verdict = try await hive.follow(try #require(check.downloadID)).events.last
        #expect(verdict.map { if case .failed(let error) = $0 { error.code == .checksumMismatch } else { false } } == true)
        // An imported file outside the model directory stays on disk when removed from the catalog.
        try await catalog.remove(id: "gemma-3-270m-q4_k_m")
        #expect(FileManager.default.fileExists(atPath: modelPath))
        #expect(try await catalog.model(id: "gemma-3-270m-q4_k_m") == nil)
        try await hive.stop()
    }

    @Test func aCorruptCatalogIsMovedAsideAndRebuiltFromTheModelDirectory() async throws {
        let home = try temporaryHome()
        try FileManager.default.createDirectory(atPath: home + "/hive", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: home + "/models", withIntermediateDirectories: true)
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: home + "/hive/catalog.sqlite"))
        try FileManager.default.createSymbolicLink(atPath: home + "/models/rescued.gguf", withDestinationPath: modelPath)
        var logger = Logger(label: "test-catalog")
        logger.logLevel = .critical
        let catalog = try await ModelCatalog(home: home, logger: logger)
        #expect(try await catalog.list().map(\.id) == ["rescued"])
        let files = try FileManager.default.contentsOfDirectory(atPath: home + "/hive")
        #expect(files.contains { $0.hasPrefix("catalog.sqlite.corrupt-") })
    }

    static func hiveBinary() -> String? { binary(named: "rbee-hive") }
}

/// Talks to a hive that runs as a separate process.
struct RunningHiveClient {
    let baseURL: String

    func download(_ reference: String) async throws -> DownloadStarted {
        var request = HTTPClientRequest(url: baseURL + "/v1/models/download")
        request.method = .POST
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(DownloadRequest(modelRef: reference))))
        let response = try await http.execute(request, timeout: .seconds(10))
        return try JSONDecoder().decode(DownloadStarted.self, from: Data(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    /// Follows progress until `bytes` were downloaded; false if the stream ended first.
    func waitForProgress(_ downloadID: String, atLeast bytes: Int) async throws -> Bool {
        let response = try await http.execute(HTTPClientRequest(url: baseURL + "/v1/models/download/progress?id=" + downloadID), timeout: .seconds(60))
        var parser = SSEParser()
        for try await chunk in response.body {
            for case .data(let json) in parser.feed(chunk.readableBytesView) where json != "[DONE]" {
                if case .downloading(let done, _, _, _, _) = try JSONDecoder().decode(DownloadProgress.self, from: Data(json.utf8)), done >= bytes {
                    return true
                }
            }
        }
        return false
    }
}

import AsyncHTTPClient
import NIOCore
import NIOFoundationCompat
