import AsyncHTTPClient
import Foundation
import NIOCore
import RbeeAPI
import RbeeTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A hive machine suspended and resumed (a laptop lid, a paused VM), as SIGSTOP and SIGCONT of
/// the real `rbee-hive` process: its workers run on, the queen routes around it, and once it is
/// back nothing it owned is lost and it takes work again at once.
@Suite(.serialized) struct SuspendResumeTests {
    @Test func aSuspendedHiveKeepsItsWorkersAndTheQueenRoutesAroundItUntilItIsBack() async throws {
        let directory = (modelPath as NSString).deletingLastPathComponent
        let model = "file:" + modelPath
        // h1 expects a worker heartbeat every second: 3 s of silence stops a worker.
        let cluster = try await Cluster.start(hives: [
            ("h1", ["--model-dir", directory, "--worker-heartbeat-secs", "1", "--worker-probe-secs", "1"], [:]),
            ("h2", ["--model-dir", directory], [:]),
        ])
        let h1 = try #require(cluster.hives["h1"])
        do {
            let warm = try await runTask(cluster.queen.url, json: taskJSON(model, extra: #""hive":"h1""#))
            #expect(warm.endsProperly)
            let worker = try #require(try await cluster.workers().first { $0.hive == "h1" && $0.state == .ready })
            let pid = try #require(worker.pid)

            h1.signal(SIGSTOP)
            let suspended = ContinuousClock.now
            try await waitUntil(.seconds(10)) { try await cluster.hiveList().first { $0.name == "h1" }?.status == .unreachable }

            // A task for the hive the queen marks unreachable fails at once, with when to retry.
            let asked = ContinuousClock.now
            let (refused, body) = try await post(cluster.queen.url + "/v2/tasks", json: taskJSON(model, extra: #""hive":"h1""#))
            let answeredAfter = ContinuousClock.now - asked
            #expect(refused.status.code == 503, "\(String(decoding: body, as: UTF8.self))")
            #expect(answeredAfter < .seconds(1), "answered after \(answeredAfter)")
            #expect((try? decode(ErrorEnvelope.self, body).error.code) == .hiveUnreachable, "\(String(decoding: body, as: UTF8.self))")
            #expect(Int(refused.headers.first(name: "Retry-After") ?? "") ?? 0 >= 1)
            // One that names no hive goes to the other.
            let elsewhere = try await runTask(cluster.queen.url, json: taskJSON(model))
            #expect(elsewhere.endsProperly)
            #expect(Self.hive(of: elsewhere) == "h2", "\(elsewhere.events.map(\.event))")

            // Suspended well past 3 of its workers' heartbeat intervals: the worker's own beats
            // time out meanwhile (1 s each), which does not make it give its hive up.
            let resumeAt = suspended + .seconds(8)
            if ContinuousClock.now < resumeAt { try await Task.sleep(until: resumeAt) }
            h1.signal(SIGCONT)
            try await Task.sleep(for: .seconds(4))
            #expect(kill(pid, 0) == 0, "the worker was stopped: \(h1.tail())")
            struct Workers: Decodable { var workers: [HiveWorkerInfo] }
            let listed = try await get(h1.url + "/v1/workers", as: Workers.self).workers.first { $0.workerID == worker.workerID }
            #expect(listed?.state == .ready, "\(String(describing: listed)) \(h1.tail())")
            #expect(h1.tail().contains("clock gap"), "\(h1.tail())")
            let workerLog = String(decoding: try await get(h1.url + "/v1/workers/\(worker.workerID)/logs").1, as: UTF8.self)
            #expect(workerLog.contains("not counted") && !workerLog.contains("hive lost"), "\(workerLog.suffix(1500))")

            // Back online, it takes work at once, on the worker it kept.
            try await waitUntil(.seconds(10)) { try await cluster.hiveList().first { $0.name == "h1" }?.status == .online }
            let back = try await runTask(cluster.queen.url, json: taskJSON(model, extra: #""hive":"h1""#), timeout: .seconds(30))
            #expect(back.endsProperly)
            guard case .end? = back.terminal else {
                Issue.record("expected an answer, got \(String(describing: back.terminal))\nqueen: \(cluster.queen.tail())")
                throw DaemonError("no answer from the resumed hive")
            }
            #expect(back.text == warm.text)
            #expect(Self.worker(of: back) == worker.workerID)
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())\nh1: \(h1.tail())")
        }
        h1.signal(SIGCONT)
        await cluster.stop()
    }

    static func hive(of transcript: TaskTranscript) -> String? {
        transcript.events.compactMap { if case .started(_, _, let hive, _, _) = $0.event { hive } else { nil } }.first
    }

    static func worker(of transcript: TaskTranscript) -> String? {
        transcript.events.compactMap { if case .started(_, _, _, let worker, _) = $0.event { worker } else { nil } }.first
    }
}
