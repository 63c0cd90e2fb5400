import AsyncHTTPClient
import Foundation
import NIOCore
import RbeeAPI
import RbeeTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// How tasks end when something goes away: the queen itself (drain on SIGTERM), a wedged worker
/// under a cancelling client, and a hive's refusal carried typed to the client.
@Suite(.serialized) struct QueenLifecycleTests {
    /// SIGTERM with 3 streams in flight: the two that can finish within the grace period end with
    /// their normal `end`, the one that cannot gets `error` + `[DONE]`; a request meanwhile gets
    /// 503; the local hive and its worker are gone afterwards; the queen exits 0.
    @Test func sigtermDrainsTasksInFlightRefusesNewOnesAndStopsTheLocalHive() async throws {
        let home = try temporaryHome()
        let port = freePort()
        let queen = try Daemon(
            binary(named: "queen-rbee"),
            [
                "--port", "\(port)", "--home", home, "--local-hive-port", "0", "--model-dir", (modelPath as NSString).deletingLastPathComponent,
                "--drain-grace-secs", "4", "--keep-alive-secs", "1",
            ], url: "http://127.0.0.1:\(port)", log: home + "/queen.log")
        try await queen.waitHealthy()
        let model = "file:" + modelPath
        let warm = try await runTask(queen.url, json: taskJSON(model, maxTokens: 2))
        #expect(warm.endsProperly, "\(queen.tail())")
        let worker = try #require(try await get(queen.url + "/v1/workers", as: WorkerList.self).workers.first)
        let hivePID = try #require(
            processes(containing: "rbee-hive serve").filter { $0.contains(home) }.compactMap { Int32($0.prefix { $0 != ":" }) }.first)

        let started = Counter()
        let onToken: @Sendable (TaskEvent) async -> Void = { event in
            if case .token(_, 0) = event { started.value.withLock { $0 += 1 } }
        }
        async let short1 = runTask(queen.url, json: taskJSON(model, prompt: "One", maxTokens: 30, extra: #""ignore_eos":true"#), onEvent: onToken)
        async let short2 = runTask(queen.url, json: taskJSON(model, prompt: "Two", maxTokens: 30, extra: #""ignore_eos":true"#), onEvent: onToken)
        async let long = runTask(queen.url, json: taskJSON(model, prompt: "Three", maxTokens: 4000, extra: #""ignore_eos":true"#), onEvent: onToken)
        try await waitUntil(.seconds(30)) { started.value.withLock { $0 } == 3 }
        queen.signal(SIGTERM)
        try await Task.sleep(for: .milliseconds(200))
        let (refused, body) = try await post(queen.url + "/v2/tasks", json: taskJSON(model))
        #expect(refused.status.code == 503, "\(String(decoding: body, as: UTF8.self))")
        #expect(try JSONDecoder().decode(ErrorEnvelope.self, from: body).error.code == .unavailable)

        for transcript in try await [short1, short2] {
            #expect(transcript.endsProperly)
            guard case .end(let stats)? = transcript.terminal else {
                Issue.record("a task that fits in the grace period ends normally: \(String(describing: transcript.terminal))")
                continue
            }
            #expect(stats.tokensOut == 30 && stats.stopReason == .maxTokens)
        }
        let cut = try await long
        #expect(cut.endsProperly)
        guard case .error(let error)? = cut.terminal else {
            Issue.record("past the grace period: error, got \(String(describing: cut.terminal))")
            return
        }
        #expect(error.code == .unavailable)
        #expect(cut.tokenCount < 4000)

        try await waitUntil(.seconds(30)) { !queen.process.isRunning }
        #expect(queen.process.terminationStatus == 0 && queen.process.terminationReason == .exit, "\(queen.tail())")
        #expect(kill(hivePID, 0) != 0, "the local hive is gone")
        #expect(worker.pid.map { kill($0, 0) != 0 } == true, "its worker is gone")
        #expect(queen.tail().contains("drain grace over"))
    }

    /// One cluster, two hives: `tiny` has room for no model, `roomy` serves.
    @Test func aWedgedWorkerDoesNotHoldUpACancelAndAHivesRefusalReachesTheClientTyped() async throws {
        let modelDirectory = (modelPath as NSString).deletingLastPathComponent
        let cluster = try await Cluster.start(hives: [
            ("tiny", ["--model-dir", modelDirectory, "--memory-limit-bytes", "1000"], [:]), ("roomy", ["--model-dir", modelDirectory], [:]),
        ])
        do {
            // The hive refuses the spawn with 507 and the numbers; the /v2/tasks client gets that
            // error as its stream's error event: the same code, the same details.
            let tinyURL = try #require(cluster.hives["tiny"]?.url)
            let (direct, directBody) = try await post(
                tinyURL + "/v1/workers/spawn", json: #"{"model_ref":"file:\#(modelPath)"}"#)
            #expect(direct.status.code == 507)
            let hiveError = try JSONDecoder().decode(ErrorEnvelope.self, from: directBody).error
            #expect(hiveError.code == .insufficientRAM && hiveError.details["bytes_available"] == 1000)
            let refused = try await runTask(cluster.queen.url, json: taskJSON("file:" + modelPath, extra: #""hive":"tiny""#))
            #expect(refused.endsProperly)
            guard case .error(let error)? = refused.terminal else {
                Issue.record("expected the hive's refusal, got \(String(describing: refused.terminal))")
                return
            }
            #expect(error.code == hiveError.code)
            #expect(error.details == hiveError.details)

            // A worker frozen with SIGSTOP while its client cancels: the stream ends at once with
            // `end {stop_reason: cancelled}`, not when the stall timer (30 s) runs out.
            let warm = try await runTask(cluster.queen.url, json: taskJSON("file:" + modelPath, maxTokens: 2, extra: #""hive":"roomy""#))
            #expect(warm.endsProperly)
            let pid = try #require(try await cluster.workers().first { $0.hive == "roomy" }?.pid)
            let cancelledAt = Mutex<ContinuousClock.Instant?>(nil)
            let taskID = Mutex<String?>(nil)
            let queenURL = cluster.queen.url
            let wedged = try await runTask(
                queenURL, json: taskJSON("file:" + modelPath, maxTokens: 4000, extra: #""hive":"roomy","ignore_eos":true"#)
            ) { event in
                if case .started(let id, _, _, _, _) = event { taskID.withLock { $0 = id } }
                guard case .token(_, 3) = event, let id = taskID.withLock({ $0 }) else { return }
                kill(pid, SIGSTOP)
                cancelledAt.withLock { $0 = .now }
                var request = HTTPClientRequest(url: queenURL + "/v2/tasks/" + id)
                request.method = .DELETE
                _ = try? await http.execute(request, timeout: .seconds(5))
            }
            kill(pid, SIGKILL)
            #expect(wedged.endsProperly)
            guard case .end(let stats)? = wedged.terminal else {
                Issue.record("expected end {cancelled}, got \(String(describing: wedged.terminal))")
                return
            }
            #expect(stats.stopReason == .cancelled)
            let ended = try #require(wedged.events.last?.at)
            let cancelled = try #require(cancelledAt.withLock { $0 })
            #expect(ended - cancelled < .seconds(2), "ended \(ended - cancelled) after the cancel")
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())")
        }
        await cluster.stop()
    }

    struct WorkerList: Decodable { var workers: [ClusterWorker] }

    final class Counter: Sendable {
        let value = Mutex(0)
    }
}
