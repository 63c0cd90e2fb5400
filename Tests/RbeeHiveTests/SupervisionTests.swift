import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import RbeeAPI
import RbeeHive
import RbeeTestSupport
import Testing

/// Acceptance 5 of the hive issue, with real `llm-worker-rbee` children on the real model.
@Suite(.serialized) struct SupervisionTests {
    static func startHive(
        home: String? = nil, server: ModelServer? = nil, idle: Duration = .seconds(60),
        _ adjust: @escaping (inout SupervisionSettings) -> Void = { _ in }
    ) async throws -> RunningHive {
        let worker = binary(named: "llm-worker-rbee")
        return try await RunningHive.start(home: home, server: server) {
            $0.extraModelDirectories = [(modelPath as NSString).deletingLastPathComponent]
            $0.supervision = SupervisionSettings(workerBinary: worker)
            $0.supervision.heartbeatInterval = .milliseconds(300)
            $0.supervision.healthProbeInterval = .seconds(1)
            $0.supervision.idleTimeout = idle
            $0.supervision.stopGrace = .seconds(3)
            adjust(&$0.supervision)
        }
    }

    func spawn(_ hive: RunningHive, reuse: Bool = true) async throws -> HiveWorkerInfo {
        var request = HTTPClientRequest(url: hive.baseURL + "/v1/workers/spawn")
        request.method = .POST
        request.body = .bytes(
            ByteBuffer(data: try JSONEncoder().encode(WorkerSpawnRequest(modelRef: "file:" + modelPath, parallel: 2, ctxSize: 512, reuse: reuse))))
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        try #require(response.status == .accepted, "spawn answered \(response.status): \(String(decoding: body, as: UTF8.self))")
        return try JSONDecoder().decode(HiveWorkerInfo.self, from: body)
    }

    func state(_ hive: RunningHive, _ workerID: String) -> HiveWorkerInfo? {
        hive.service.supervisor.list().first { $0.workerID == workerID }
    }

    /// Reads an SSE response to its end; returns the data payloads.
    func sse(_ url: String, method: HTTPMethod = .GET, json: String? = nil) async throws -> [String] {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let json { request.body = .bytes(ByteBuffer(string: json)) }
        let response = try await http.execute(request, timeout: .seconds(60))
        var parser = SSEParser()
        var data: [String] = []
        for try await chunk in response.body {
            for case .data(let payload) in parser.feed(chunk.readableBytesView) { data.append(payload) }
        }
        return data
    }

    static func alive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    @Test func aSpawnedWorkerLoadsServesIsReusedAndStopsWhenIdle() async throws {
        let hive = try await Self.startHive(idle: .seconds(3))
        let worker = try await spawn(hive)
        #expect(worker.state == .loading)
        #expect(worker.url.hasPrefix("http://127.0.0.1:") && worker.url != "http://127.0.0.1:0", "the port the worker picked: \(worker.url)")
        #expect(worker.progressURL == hive.baseURL + "/v1/workers/\(worker.workerID)/progress", "the hive relays the loading progress")
        let pid = try #require(worker.pid)

        let progress = try await sse(worker.progressURL)
        #expect(progress.suffix(2) == [#"{"stage":"ready"}"#, "[DONE]"])
        let ready = try await waitFor(timeout: .seconds(10)) { state(hive, worker.workerID)?.state == .ready } != nil
        #expect(ready)
        let stream = try await sse(worker.url + "/v1/inference", method: .POST, json: #"{"prompt":"Bees make","max_tokens":8}"#)
        #expect(stream.last == "[DONE]")
        #expect(stream.dropLast().last?.contains(#""type":"end""#) == true)
        #expect(try await spawn(hive).workerID == worker.workerID, "the ready worker was not reused")

        // Idle for 3 s (heartbeats show no new request): stopped and gone.
        let stopped = try await waitFor(timeout: .seconds(15)) { state(hive, worker.workerID) == nil && !Self.alive(pid) } != nil
        #expect(stopped, "the idle worker is still there: \(String(describing: state(hive, worker.workerID)))")
        try await hive.stop()
    }

    @Test func aKilledWorkerIsNoticedAtOnceAndShutdownLeavesNoChild() async throws {
        let hive = try await Self.startHive()
        let first = try await spawn(hive)
        let second = try await spawn(hive, reuse: false)
        #expect(first.workerID != second.workerID)
        #expect(try await waitFor(timeout: .seconds(20)) { state(hive, first.workerID)?.state == .ready && state(hive, second.workerID)?.state == .ready } != nil)

        let victim = try #require(first.pid)
        let killedAt = ContinuousClock.now
        kill(victim, SIGKILL)
        let noticed = try await waitFor(timeout: .seconds(2)) { state(hive, first.workerID)?.state == .failed } != nil
        #expect(noticed, "kill -9 was not noticed within 2 s (took \(ContinuousClock.now - killedAt))")
        #expect(state(hive, first.workerID)?.exit == "signal 9")

        let survivor = try #require(second.pid)
        #expect(Self.alive(survivor))
        try await hive.stop()
        #expect(!Self.alive(survivor), "hive shutdown left worker \(survivor) running")
    }

    @Test func notEnoughMemoryIs507() async throws {
        let hive = try await Self.startHive { $0.memoryHeadroom = 1000 }
        var request = HTTPClientRequest(url: hive.baseURL + "/v1/workers/spawn")
        request.method = .POST
        request.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(WorkerSpawnRequest(modelRef: "file:" + modelPath))))
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        #expect(response.status.code == 507)
        #expect(try JSONDecoder().decode(ErrorEnvelope.self, from: body).error.code == "INSUFFICIENT_RAM")
        #expect(hive.service.supervisor.list().isEmpty)
        try await hive.stop()
    }

    @Test func aWorkerThatFallsSilentIsStoppedAndRemoved() async throws {
        let hive = try await Self.startHive { $0.stopGrace = .milliseconds(500) }
        let worker = try await spawn(hive)
        #expect(try await waitFor(timeout: .seconds(20)) { state(hive, worker.workerID)?.state == .ready } != nil)
        let pid = try #require(worker.pid)
        kill(pid, SIGSTOP)  // alive but silent: no heartbeats, no health answers
        let removed = try await waitFor(timeout: .seconds(10)) { state(hive, worker.workerID) == nil } != nil
        #expect(removed, "a silent worker was kept: \(String(describing: state(hive, worker.workerID)))")
        #expect(try await waitFor(timeout: .seconds(5)) { !Self.alive(pid) } != nil, "the silent worker's process is still alive")
        try await hive.stop()
    }

    @Test func aWorkerStillLoadingAfterTheTimeoutIsStopped() async throws {
        let hive = try await Self.startHive { $0.loadingTimeout = .milliseconds(1) }
        let (response, body) = try await post(
            hive.baseURL + "/v1/workers/spawn", json: #"{"model_ref":"file:\#(modelPath)","parallel":2,"ctx_size":512}"#)
        // The timeout may strike before the worker even listens: then the spawn itself says so.
        if response.status == .accepted {
            let worker = try decode(HiveWorkerInfo.self, body)
            let failed = try await waitFor(timeout: .seconds(10)) { state(hive, worker.workerID)?.state == .failed }
            #expect(failed != nil)
            #expect(state(hive, worker.workerID)?.error?.code == .loadingTimeout)
        } else {
            #expect(try decode(ErrorEnvelope.self, body).error.code == .loadingTimeout, "\(String(decoding: body, as: UTF8.self))")
        }
        try await hive.stop()
    }

    @Test func spawningAModelThatIsNotHereDownloadsItFirst() async throws {
        let server = try await ModelServer.start(files: [modelURLPath: modelPath])
        let worker = binary(named: "llm-worker-rbee")
        let hive = try await RunningHive.start(server: server) {
            $0.supervision = SupervisionSettings(workerBinary: worker)
            $0.supervision.heartbeatInterval = .milliseconds(300)
        }
        var request = HTTPClientRequest(url: hive.baseURL + "/v1/workers/spawn")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: #"{"model_ref":"\#(modelRef)","ctx_size":512,"parallel":1}"#))
        let response = try await http.execute(request, timeout: .seconds(30))
        let spawned = try JSONDecoder().decode(HiveWorkerInfo.self, from: Data(buffer: try await response.body.collect(upTo: 1 << 20)))
        #expect(response.status == .accepted)
        #expect(spawned.state == .starting)
        #expect(spawned.progressURL.contains("/v1/models/download/progress?id=dl-"))
        let download = try await sse(spawned.progressURL)
        #expect(download.last == "[DONE]")
        #expect(download.dropLast().last?.contains(#""stage":"complete""#) == true)
        #expect(try await waitFor(timeout: .seconds(20)) { state(hive, spawned.workerID)?.state == .ready } != nil)
        try await hive.stop()
        await server.stop()
    }
}
