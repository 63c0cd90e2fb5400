import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import RbeeAPI
import RbeeHive
import RbeeTestSupport
import Testing

/// A hive running in this process on a free loopback port, downloading from `server`.
struct RunningHive: Sendable {
    let service: HiveService
    let baseURL: String
    let task: Task<Void, any Error>
    let home: String

    static func start(home: String? = nil, server: ModelServer?, _ configure: (inout HiveConfiguration) -> Void = { _ in }) async throws
        -> RunningHive
    {
        let home = try home ?? temporaryHome()
        var configuration = HiveConfiguration(home: home)
        configuration.port = 0
        configuration.keepAliveInterval = .milliseconds(500)
        configuration.downloads.hfEndpoint = server?.url ?? "http://127.0.0.1:9"
        configuration.downloads.initialBackoff = .milliseconds(100)
        configuration.downloads.stallTimeout = .seconds(2)
        configure(&configuration)
        var logger = Logger(label: "test-hive")
        logger.logLevel = ProcessInfo.processInfo.environment["RBEE_TEST_LOG"] != nil ? .debug : .warning
        let service = try await HiveService(configuration: configuration, logger: logger)
        let task = Task { try await service.run(handleSignals: false) }
        let port = await service.port()
        let host = configuration.host == "0.0.0.0" ? "127.0.0.1" : configuration.host
        return RunningHive(service: service, baseURL: "http://\(host):\(port)", task: task, home: home)
    }

    func stop() async throws {
        service.shutdownSwitch.request()
        try await task.value
    }

    /// `POST /v1/models/download`.
    func download(_ reference: String, sha256: String? = nil) async throws -> (HTTPResponseStatus, Data) {
        var request = HTTPClientRequest(url: baseURL + "/v1/models/download")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(DownloadRequest(modelRef: reference, sha256: sha256))))
        let response = try await http.execute(request, timeout: .seconds(30))
        return (response.status, Data(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    /// Follows a download's progress to the end: its events and whether `[DONE]` closed it.
    func follow(_ downloadID: String) async throws -> (events: [DownloadProgress], done: Bool, status: HTTPResponseStatus, frames: [String]) {
        let request = HTTPClientRequest(url: baseURL + "/v1/models/download/progress?id=" + downloadID)
        let response = try await http.execute(request, timeout: .seconds(120))
        var parser = SSEParser()
        var events: [DownloadProgress] = []
        var done = false
        var frames: [String] = []
        for try await chunk in response.body {
            for message in parser.feed(chunk.readableBytesView) {
                guard case .data(let json) = message else { continue }
                frames.append(json)
                if json == "[DONE]" {
                    done = true
                } else {
                    events.append(try JSONDecoder().decode(DownloadProgress.self, from: Data(json.utf8)))
                }
            }
        }
        return (events, done, response.status, frames)
    }

    /// Starts a download and follows it to its terminal event.
    func downloadToEnd(_ reference: String, sha256: String? = nil) async throws -> DownloadProgress? {
        let (status, body) = try await download(reference, sha256: sha256)
        guard status == .accepted else {
            Issue.record("expected 202, got \(status): \(String(decoding: body, as: UTF8.self))")
            return nil
        }
        let started = try JSONDecoder().decode(DownloadStarted.self, from: body)
        return try await follow(started.downloadID ?? "").events.last
    }

    /// Files in the model directory.
    var modelFiles: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: home + "/models")) ?? []).sorted() }
}
