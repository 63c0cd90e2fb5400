import AsyncHTTPClient
import Foundation
import Logging
import Hummingbird
import NIOCore
import RbeeAPI
import RbeeHTTP
import RbeeTestSupport
import RbeeWorker
import Synchronization
import Testing

/// Loading, failure, shutdown and hive reporting, each on a worker of its own.
@Suite(.serialized) struct WorkerLifecycleTests {
    @Test func loadingProgressIsStreamedThenReadyAndTheTokenGuardsEveryRouteButHealth() async throws {
        let worker = try await RunningWorker.start {
            $0.loadOnStart = false
            $0.token = APIToken("s3cret-token")
        }
        let auth = [("Authorization", "Bearer s3cret-token")]
        #expect(try await get(worker.baseURL + "/health").0.status == .ok)
        let (missing, missingBody) = try await get(worker.baseURL + "/v1/ready")
        #expect(missing.status == .unauthorized)
        #expect(try decode(ErrorEnvelope.self, missingBody).error.code == "MISSING_API_KEY")
        let (wrong, wrongBody) = try await get(worker.baseURL + "/v1/ready", headers: [("Authorization", "Bearer nope")])
        #expect(wrong.status == .unauthorized)
        #expect(try decode(ErrorEnvelope.self, wrongBody).error.code == "INVALID_API_KEY")
        let ready = try decode(WorkerReadiness.self, try await get(worker.baseURL + "/v1/ready", headers: auth).1)
        #expect(ready.state == .loading)
        #expect(ready.progressURL == "/v1/loading/progress")

        var progress = try await EventStreamClient.open(worker.baseURL + "/v1/loading/progress", method: .GET, headers: auth)
        let first = try #require(try await progress.next())
        worker.service.engine.start()
        var events = [first]
        while let message = try await progress.next() { events.append(message) }
        let stages = events.compactMap { message -> LoadingProgress? in
            guard case .data(let json) = message.message, json != "[DONE]" else { return nil }
            return try? JSONDecoder().decode(LoadingProgress.self, from: Data(json.utf8))
        }
        let layers = stages.compactMap { if case .loading(let loaded, let total, _, _) = $0 { (loaded, total) } else { nil } }
        #expect(layers.first?.0 == 0)
        #expect(layers.allSatisfy { $0.1 == 18 })
        #expect(layers.map(\.0) == layers.map(\.0).sorted())
        #expect(Set(layers.map(\.0)).count > 3, "too few distinct progress steps: \(layers)")
        #expect(layers.last?.0 == 18)
        #expect(stages.last == .ready)
        #expect(events.last?.isDone == true)

        // After the load: ready and [DONE] at once.
        var late = try await EventStreamClient.open(worker.baseURL + "/v1/loading/progress", method: .GET, headers: auth)
        let lateEvents = try await late.collect().messages.map(\.message)
        #expect(lateEvents == [.data(#"{"stage":"ready"}"#), .data("[DONE]")])
        #expect(try decode(WorkerReadiness.self, try await get(worker.baseURL + "/v1/ready", headers: auth).1).ready)
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    @Test func aBadModelFileReportsAnErrorAndQueuedRequestsGetOne() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rbee-bad-\(UUID().uuidString).gguf").path
        try Data("this is not a model".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let worker = try await RunningWorker.start(model: path) { $0.loadOnStart = false }
        var queued = try await EventStreamClient.open(worker.baseURL + "/v1/inference", json: inferenceJSON("hi", maxTokens: 4))
        #expect(queued.response.status == .ok)
        worker.service.engine.start()

        let transcript = try await queued.collect()
        #expect(transcript.endsProperly)
        guard case .error(let error)? = transcript.terminal else {
            Issue.record("expected an error event, got \(String(describing: transcript.terminal))")
            return
        }
        #expect(error.code == .unavailable)
        #expect(error.message.contains("not a GGUF file"))

        var progress = try await EventStreamClient.open(worker.baseURL + "/v1/loading/progress", method: .GET)
        let stages = try await progress.collect().messages.map(\.message)
        #expect(stages.count == 2)
        #expect(stages.first.map { if case .data(let json) = $0 { json.contains(#""stage":"error""#) } else { false } } == true)
        let ready = try decode(WorkerReadiness.self, try await get(worker.baseURL + "/v1/ready").1)
        #expect(ready.state == .error)
        #expect(ready.error?.contains("not a GGUF file") == true)
        let (refused, body) = try await post(worker.baseURL + "/v1/inference", json: inferenceJSON("hi", maxTokens: 4))
        #expect(refused.status == .serviceUnavailable)
        #expect(try decode(ErrorEnvelope.self, body).error.code == "UNAVAILABLE")
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }

    /// `--max-queue 0`: no request waits, but every free slot takes one.
    @Test func aWorkerWithoutAQueueAdmitsWhileASlotIsFree() async throws {
        let worker = try await RunningWorker.start {
            $0.engine.parallel = 2
            $0.engine.maxQueue = 0
        }
        await worker.waitLoaded()
        var streams: [EventStreamClient] = []
        for index in 0..<2 {
            var stream = try await EventStreamClient.open(
                worker.baseURL + "/v1/inference", json: inferenceJSON("Count:", maxTokens: 4000, extra: #""ignore_eos":true,"job_id":"slot-\#(index)""#))
            #expect(stream.response.status == .ok)
            while let message = try await stream.next() {
                if case .token? = message.event { break }
            }
            streams.append(stream)
        }
        let (refused, body) = try await post(worker.baseURL + "/v1/inference", json: inferenceJSON("x", maxTokens: 1))
        #expect(refused.status == .serviceUnavailable)
        #expect(try decode(ErrorEnvelope.self, body).error.code == .allSlotsBusy)
        for index in 0..<2 { _ = try await delete(worker.baseURL + "/v1/inference/slot-\(index)") }
        for var stream in streams { #expect(try await stream.collect().messages.last?.isDone == true) }
        worker.service.shutdownSwitch.request()
        _ = try await worker.task.value
    }

    @Test func shutdownWhileStreamingEndsTheStreamAndStopsTheWorker() async throws {
        let worker = try await RunningWorker.start { $0.drainGrace = .milliseconds(300) }
        await worker.waitLoaded()
        var stream = try await EventStreamClient.open(
            worker.baseURL + "/v1/inference", json: inferenceJSON("Count:", maxTokens: 4000, extra: #""ignore_eos":true"#))
        while let message = try await stream.next() { if case .token? = message.event { break } }
        let (accepted, _) = try await post(worker.baseURL + "/v1/shutdown", json: "{}")
        #expect(accepted.status == .accepted)
        let (refused, _) = try await post(worker.baseURL + "/v1/inference", json: inferenceJSON("late", maxTokens: 2))
        #expect(refused.status == .serviceUnavailable)
        let transcript = try await stream.collect()
        #expect(transcript.endsProperly)
        #expect(transcript.stats?.stopReason == .cancelled)
        #expect(await finishes(worker.task, within: .seconds(10)), "the worker did not stop after draining")
    }

    @Test func theWorkerBinaryDrainsAndExitsZeroOnSIGTERM() async throws {
        let binary = binary(named: "llm-worker-rbee")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        let port = Int.random(in: 20000..<40000)
        process.arguments = ["--model", modelPath, "--port", "\(port)", "--ctx-size", "512", "--drain-grace-secs", "0.5", "--log-level", "warning"]
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        let base = "http://127.0.0.1:\(port)"
        let up = try await waitFor(timeout: .seconds(30)) {
            guard let (response, body) = try? await get(base + "/v1/ready"), response.status == .ok else { return false }
            return (try? decode(WorkerReadiness.self, body))?.ready == true
        }
        try #require(up != nil, "the worker did not become ready")
        var stream = try await EventStreamClient.open(base + "/v1/inference", json: inferenceJSON("Count:", maxTokens: 4000, extra: #""ignore_eos":true"#))
        while let message = try await stream.next() { if case .token? = message.event { break } }
        kill(process.processIdentifier, SIGTERM)
        let transcript = try await stream.collect()
        #expect(transcript.endsProperly)
        #expect(transcript.stats?.stopReason == .cancelled)
        let exited = try await waitFor(timeout: .seconds(10)) { !process.isRunning }
        #expect(exited != nil)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
    }

    @Test func theWorkerReportsToItsHiveAndLeavesWhenTheHiveIsGone() async throws {
        let hive = try await RecordingHive.start()
        let worker = try await RunningWorker.start {
            $0.hiveURL = hive.url
            $0.heartbeatInterval = .milliseconds(100)
            $0.workerID = "worker-under-test"
        }
        let reported = try await waitFor(timeout: .seconds(30)) { hive.heartbeats.count >= 2 }
        #expect(reported != nil)
        let ready = try #require(hive.readyReports.first)
        #expect(ready.workerID == "worker-under-test")
        #expect(ready.state == .ready)
        #expect(ready.url == worker.baseURL)
        #expect(hive.heartbeats.first?.slotsTotal == 4)

        hive.refuse()
        #expect(await finishes(worker.task, within: .seconds(10)), "the worker kept running after its hive refused 3 heartbeats")
        await hive.stop()
    }
}

/// A stand-in hive for the worker's reports: it records them, and refuses once told to.
final class RecordingHive: Sendable {
    private let state = Mutex<(ready: [WorkerReadyReport], beats: [WorkerHeartbeat], refusing: Bool)>(([], [], false))
    private let server: StandInServer

    var url: String { server.url }
    var readyReports: [WorkerReadyReport] { state.withLock { $0.ready } }
    var heartbeats: [WorkerHeartbeat] { state.withLock { $0.beats } }
    func refuse() { state.withLock { $0.refusing = true } }
    func stop() async { await server.stop() }

    private init(server: StandInServer) {
        self.server = server
    }

    static func start() async throws -> RecordingHive {
        let router = Router()
        let hiveRef = HiveRef()
        router.post("/v1/workers/ready") { request, context in
            try await hiveRef.handle(request, context: context, ready: true)
        }
        router.post("/v1/workers/heartbeat") { request, context in
            try await hiveRef.handle(request, context: context, ready: false)
        }
        let hive = RecordingHive(server: await StandInServer.start(router))
        hiveRef.hive.withLock { $0 = hive }
        return hive
    }

    fileprivate func record(_ body: ByteBuffer, ready: Bool) -> Bool {
        state.withLock { state in
            guard !state.refusing else { return false }
            if ready {
                if let report = try? JSONDecoder().decode(WorkerReadyReport.self, from: body) { state.ready.append(report) }
            } else if let beat = try? JSONDecoder().decode(WorkerHeartbeat.self, from: body) {
                state.beats.append(beat)
            }
            return true
        }
    }
}

/// Lets the routes reach the hive object created after them.
private final class HiveRef: Sendable {
    let hive = Mutex<RecordingHive?>(nil)

    func handle(_ request: Request, context: BasicRequestContext, ready: Bool) async throws -> HTTPResponse.Status {
        var request = request
        let body = try await request.collectBody(upTo: 1 << 20)
        let accepted = hive.withLock { $0 }?.record(body, ready: ready) ?? false
        return accepted ? .ok : .serviceUnavailable
    }
}
