import AsyncHTTPClient
import Foundation
import NIOCore
import RbeeAPI
import Synchronization
import RbeeTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// End to end: a real `queen-rbee`, two `rbee-hive` processes with separate homes on different
/// ports (two machines), and real workers on the real model.
@Suite(.serialized) struct QueenClusterTests {
    /// Cold start where only hive B can fetch the model, warm reuse, a worker killed mid-stream,
    /// and a restarted queen that still knows its hives.
    @Test func coldStartWarmStartWorkerCrashAndRestart() async throws {
        let server = try await ModelServer.start()
        var cluster = try await Cluster.start(hives: [
            ("hive-a", ["--download-attempts", "1"], ["HF_ENDPOINT": "http://127.0.0.1:9"]),
            ("hive-b", [], ["HF_ENDPOINT": server.url]),
        ])
        do {
            // Cold: hive A cannot reach the model's source; the task moves on to hive B and shows
            // the download, then the load, then tokens.
            let cold = try await runTask(cluster.queen.url, json: taskJSON(modelRef))
            #expect(cold.status == 200, "\(String(decoding: cold.body, as: UTF8.self))")
            #expect(cold.endsProperly)
            #expect(cold.stages == ["queued", "downloading", "loading", "started", "token", "end"], "\(cold.stages) \(cold.terminal.map { "\($0)" } ?? "")")
            let downloads = cold.events.compactMap { event -> (hive: String, bytes: Int, total: Int?)? in
                if case .downloading(let hive, _, let bytes, let total, _, _, _) = event.event { (hive, bytes, total) } else { nil }
            }
            // Hive A may report its attempt (0 bytes) before it fails; every byte comes from hive B.
            #expect(downloads.filter { $0.bytes > 0 }.allSatisfy { $0.hive == "hive-b" } && downloads.last?.hive == "hive-b", "\(cold.events.map { "\($0.at - cold.sentAt) \($0.event)" })")
            #expect(Set(downloads.map(\.bytes)).count >= 2, "download progress must move: \(downloads.map(\.bytes))")
            #expect(zip(downloads, downloads.dropFirst()).allSatisfy { $0.bytes <= $1.bytes })
            #expect(downloads.last?.bytes == downloads.last?.total)
            let layers = cold.events.compactMap { event -> Int? in
                if case .loading(_, _, let loaded, _) = event.event { loaded } else { nil }
            }
            #expect(Set(layers).count >= 2 && zip(layers, layers.dropFirst()).allSatisfy { $0 <= $1 }, "\(layers)")
            #expect(cold.tokenCount == 8)

            // Warm: the same worker, first token well under 500 ms.
            let warm = try await runTask(cluster.queen.url, json: taskJSON(modelRef))
            #expect(warm.endsProperly)
            #expect(warm.stages == ["queued", "started", "token", "end"])
            let ttft = try #require(warm.firstTokenAfter)
            #expect(ttft < .milliseconds(500), "warm time to first token \(ttft)")
            #expect(warm.text == cold.text, "same seed, same greedy output")

            // A worker killed with SIGKILL mid-stream: error + [DONE] within 5 s.
            let workers = try await cluster.workers()
            let worker = try #require(workers.first { $0.hive == "hive-b" && $0.state == .ready })
            let killedAt = Mutex<ContinuousClock.Instant?>(nil)
            let crash = try await runTask(cluster.queen.url, json: taskJSON(modelRef, maxTokens: 2000, extra: "\"ignore_eos\":true")) { event in
                if case .token(_, 3) = event, let pid = worker.pid {
                    kill(pid, SIGKILL)
                    killedAt.withLock { $0 = .now }
                }
            }
            #expect(crash.endsProperly)
            guard case .error(let error)? = crash.terminal else {
                Issue.record("expected an error, got \(String(describing: crash.terminal))")
                return
            }
            #expect(error.code == .workerCrashed)
            let endedAt = try #require(crash.events.last?.at)
            let killed = try #require(killedAt.withLock { $0 })
            #expect(endedAt - killed < .seconds(5), "error after \(endedAt - killed)")

            // A worker that dies before the first token: the task is retried once on a new worker
            // and the client sees an ordinary answer.
            let replacement = try await runTask(cluster.queen.url, json: taskJSON(modelRef))
            #expect(replacement.endsProperly && replacement.text == cold.text)
            let second = try #require(try await cluster.workers().first { $0.hive == "hive-b" && $0.state == .ready && $0.workerID != worker.workerID })
            let secondPID = try #require(second.pid)
            kill(secondPID, SIGSTOP)
            let retried = try await runTask(cluster.queen.url, json: taskJSON(modelRef)) { event in
                guard case .queued = event else { return }
                try? await Task.sleep(for: .milliseconds(300))
                kill(secondPID, SIGKILL)
            }
            #expect(retried.endsProperly)
            #expect(retried.terminal.map { if case .end = $0 { true } else { false } } == true, "\(String(describing: retried.terminal))")
            #expect(retried.text == cold.text)
            let startedOn = retried.events.compactMap { if case .started(_, _, _, let workerID, _) = $0.event { workerID } else { nil } }
            #expect(startedOn.count == 1 && startedOn.first != second.workerID, "\(startedOn) after \(second.workerID) died")

            // Restarted on another port (hives keep beating to the old one): the registry is kept.
            await cluster.queen.stop()
            let port = freePort()
            let queen = try Daemon(
                binary(named: "queen-rbee"), ["--port", "\(port)", "--home", cluster.queenHome, "--no-local-hive"], url: "http://127.0.0.1:\(port)",
                log: cluster.queenHome + "/queen-restarted.log")
            defer { Task { await queen.stop() } }
            try await queen.waitHealthy()
            struct List: Decodable { var hives: [HiveRecord] }
            let hives = try await get(queen.url + "/v1/hives", as: List.self).hives
            #expect(hives.map(\.name) == ["hive-a", "hive-b"])
            #expect(hives.first { $0.name == "hive-b" }?.models == [modelID])
            await queen.stop()
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())")
        }
        await cluster.stop()
        cluster.hives.removeAll()
        await server.stop()
    }

    /// 16 concurrent requests spread over two hives and all complete; a queen with a small queue
    /// refuses the overflow with 429 + Retry-After; a hive killed with SIGKILL is unreachable
    /// after 3 heartbeat intervals and new work goes to the other.
    @Test func concurrencyAdmissionAndHiveDeath() async throws {
        let modelDirectory = URL(fileURLWithPath: modelPath).deletingLastPathComponent().path
        let cluster = try await Cluster.start(
            hives: [("hive-a", ["--model-dir", modelDirectory], [:]), ("hive-b", ["--model-dir", modelDirectory], [:])],
            queenArguments: ["--worker-parallel", "2", "--worker-queue", "2", "--max-queue", "16"])
        do {
            // Both hives have the model in their catalogs.
            for hive in cluster.hives.values {
                let (response, body) = try await post(hive.url + "/v1/models/download", json: "{\"model_ref\":\"file:\(modelPath)\"}")
                #expect(response.status == .ok, "\(String(decoding: body, as: UTF8.self))")
            }
            try await waitUntil(.seconds(10)) {
                try await cluster.hiveList().allSatisfy { $0.models == [modelID] }
            }

            // A cold OpenAI stream: loading progress as SSE comments (which OpenAI clients skip)
            // before the first chunk, then the deltas, finish_reason, usage and [DONE].
            let (coldChat, coldBody) = try await post(
                cluster.queen.url + "/v1/chat/completions",
                json: "{\"model\":\"\(modelID)\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":4,\"stream\":true}")
            #expect(coldChat.status == .ok)
            let lines = String(decoding: coldBody, as: UTF8.self).split(separator: "\n")
            let firstChunk = try #require(lines.firstIndex { $0.hasPrefix("data: {") })
            #expect(lines[..<firstChunk].contains { $0.hasPrefix(": loading \(modelID) on hive-") && $0.hasSuffix("/18 layers") }, "\(lines)")
            #expect(lines.contains { $0.contains("\"finish_reason\":\"length\"") } && lines.contains { $0.contains("\"completion_tokens\":4") })
            #expect(lines.last == "data: [DONE]")

            let transcripts = try await withThrowingTaskGroup(of: TaskTranscript.self) { group in
                for index in 0..<16 {
                    group.addTask { try await runTask(cluster.queen.url, json: taskJSON(modelID, prompt: "Count to \(index):", maxTokens: 6)) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(transcripts.count == 16)
            #expect(transcripts.allSatisfy { $0.endsProperly })
            for transcript in transcripts {
                #expect(transcript.terminal.map { if case .end = $0 { true } else { false } } == true, "\(String(describing: transcript.terminal))")
            }
            let hivesUsed = Set(transcripts.flatMap { transcript in
                transcript.events.compactMap { if case .started(_, _, let hive, _, _) = $0.event { hive } else { nil } }
            })
            #expect(hivesUsed == ["hive-a", "hive-b"])
            // Metrics per model and hive.
            let metricsResponse = try await http.execute(HTTPClientRequest(url: cluster.queen.url + "/metrics"), timeout: .seconds(10))
            let metrics = String(buffer: try await metricsResponse.body.collect(upTo: 1 << 20))
            for hive in ["hive-a", "hive-b"] {
                #expect(metrics.contains("rbee_queen_tokens_total{model=\"\(modelID)\",hive=\"\(hive)\"}"), "\(metrics)")
                #expect(metrics.contains("rbee_queen_time_to_first_token_seconds_count{model=\"\(modelID)\",hive=\"\(hive)\"}"))
            }
            #expect(metrics.contains("rbee_queen_tasks_total 17"))
            #expect(prometheusProblems(metrics).isEmpty, "\(prometheusProblems(metrics))")

            // A second queen with room for 2 waiting requests, given the hives by POST /v1/hives.
            let port = freePort()
            let home = try temporaryHome()
            let small = try Daemon(
                binary(named: "queen-rbee"),
                [
                    "--port", "\(port)", "--home", home, "--no-local-hive", "--max-queue", "2", "--worker-queue", "1", "--hive-heartbeat-secs", "1",
                    "--keep-alive-secs", "1",
                ],
                url: "http://127.0.0.1:\(port)", log: home + "/queen.log")
            defer { Task { await small.stop() } }
            try await small.waitHealthy()
            for (name, hive) in cluster.hives {
                let (response, body) = try await post(small.url + "/v1/hives", json: "{\"name\":\"\(name)\",\"url\":\"\(hive.url)\"}")
                #expect(response.status == .created, "\(String(decoding: body, as: UTF8.self))")
            }
            let (duplicate, _) = try await post(small.url + "/v1/hives", json: "{\"name\":\"hive-a\",\"url\":\"\(cluster.hives["hive-a"]!.url)\"}")
            #expect(duplicate.status == .conflict)
            struct WorkerList: Decodable { var workers: [ClusterWorker] }
            try await waitUntil(.seconds(5)) { try await get(small.url + "/v1/workers", as: WorkerList.self).workers.count == 2 }
            let burst = try await withThrowingTaskGroup(of: TaskTranscript.self) { group in
                for _ in 0..<14 {
                    group.addTask { try await runTask(small.url, json: taskJSON(modelID, maxTokens: 24, extra: "\"ignore_eos\":true")) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let refused = burst.filter { $0.status == 429 }
            #expect(refused.count >= 1, "statuses \(burst.map(\.status))")
            #expect(refused.allSatisfy { Int($0.headers.first(name: "Retry-After") ?? "") ?? 0 >= 1 })
            #expect(refused.allSatisfy { String(decoding: $0.body, as: UTF8.self).contains("QUEUE_FULL") })
            for transcript in burst where transcript.status == 200 {
                #expect(transcript.endsProperly && transcript.tokenCount == 24, "\(transcript.stages) \(String(describing: transcript.terminal))")
            }
            #expect(burst.filter { $0.status == 200 }.count + refused.count == 14)
            await small.stop()

            // Hive A dies with SIGKILL (its workers follow it): unreachable after 3 intervals.
            cluster.hives["hive-a"]!.signal(SIGKILL)
            let killed = ContinuousClock.now
            let noticed = try await waitUntil(.seconds(10)) {
                try await cluster.hiveList().first { $0.name == "hive-a" }?.status == .unreachable
            }
            #expect(noticed - killed < .seconds(cluster.heartbeatSecs * 3 + 2), "noticed after \(noticed - killed)")
            let after = try await runTask(cluster.queen.url, json: taskJSON(modelID))
            #expect(after.endsProperly)
            let hive = after.events.compactMap { if case .started(_, _, let hive, _, _) = $0.event { hive } else { nil } }.first
            #expect(hive == "hive-b", "\(after.events.map(\.event))")
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())")
        }
        await cluster.stop()
    }
}

