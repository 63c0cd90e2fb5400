import AsyncHTTPClient
import Foundation
import NIOCore
import RbeeAPI
import RbeeTestSupport
import Synchronization
import Testing

/// A queen and two hives on three network hosts (network namespaces joined by a bridge), the
/// token on: what crosses a network interface, not loopback. Needs root and iproute2; skipped,
/// saying why, where they are missing.
@Suite(.serialized, .enabled(if: NetworkLab.unavailableReason == nil, "\(NetworkLab.unavailableReason ?? "")"))
struct NetworkHostsTests {
    static let token = "network-test-token"
    var auth: [(String, String)] { [("Authorization", "Bearer \(Self.token)")] }

    /// A queen on host `q` and a hive on each other host of the lab, the token on, heartbeats every
    /// second. `kill` ends whatever still runs (a test's defer); `stop` ends them gracefully.
    final class LabCluster: Sendable {
        let lab: NetworkLab
        let queen: Daemon
        let hives: [String: Daemon]
        var queenURL: String { queen.url }
        var daemons: [Daemon] { [queen] + hives.values }

        private init(lab: NetworkLab, queen: Daemon, hives: [String: Daemon]) {
            self.lab = lab
            self.queen = queen
            self.hives = hives
        }

        static func start(_ lab: NetworkLab, queenArguments: [String] = []) async throws -> LabCluster {
            let environment = ["RBEE_API_TOKEN": NetworkHostsTests.token]
            let queenHome = try temporaryHome()
            let queen = try lab.run(
                "q", binary(named: "queen-rbee"),
                ["--host", lab.address(of: "q"), "--port", "7833", "--home", queenHome, "--no-local-hive", "--hive-heartbeat-secs", "1"]
                    + queenArguments, url: "http://\(lab.address(of: "q")):7833", log: queenHome + "/queen.log", environment: environment)
            var hives: [String: Daemon] = [:]
            do {
                try await queen.waitHealthy()
                for name in lab.hosts where name != "q" {
                    let home = try temporaryHome()
                    hives[name] = try lab.run(
                        name, binary(named: "rbee-hive"),
                        [
                            "serve", "--host", lab.address(of: name), "--port", "7835", "--home", home, "--name", name, "--queen-url", queen.url,
                            "--heartbeat-secs", "1", "--model-dir", (modelPath as NSString).deletingLastPathComponent,
                            "--worker-binary", binary(named: "llm-worker-rbee"),
                        ], url: "http://\(lab.address(of: name)):7835", log: home + "/hive.log", environment: environment)
                }
            } catch {
                LabCluster(lab: lab, queen: queen, hives: hives).kill()
                throw error
            }
            return LabCluster(lab: lab, queen: queen, hives: hives)
        }

        func kill() {
            for daemon in daemons where daemon.process.isRunning {
                daemon.signal(SIGKILL)
                daemon.process.waitUntilExit()
            }
        }

        func stop() async {
            for daemon in daemons { await daemon.stop() }
        }
    }

    @Test func aQueenAndTwoHivesOnThreeHostsServeAnOpenAIStreamWithTheTokenOnEveryHop() async throws {
        let lab = try NetworkLab(hosts: ["q", "h1", "h2"])
        defer { lab.remove() }
        let cluster = try await LabCluster.start(lab)
        defer { cluster.kill() }
        let queenURL = cluster.queenURL
        do {
            struct Hives: Decodable { var hives: [HiveRecord] }
            try await waitUntil(.seconds(20)) {
                let listed = try JSONDecoder().decode(Hives.self, from: try await get(queenURL + "/v1/hives", headers: auth).1).hives
                return Set(listed.filter { $0.status == .online }.map(\.name)) == ["h1", "h2"]
            }
            let listed = try JSONDecoder().decode(Hives.self, from: try await get(queenURL + "/v1/hives", headers: auth).1).hives
            #expect(Set(listed.map(\.url)) == ["http://\(lab.address(of: "h1")):7835", "http://\(lab.address(of: "h2")):7835"])

            // An OpenAI stream through the queen lands on a hive and streams to [DONE].
            let (chat, body) = try await post(
                queenURL + "/v1/chat/completions",
                json: #"{"model":"file:\#(modelPath)","messages":[{"role":"user","content":"Hi"}],"max_tokens":6,"stream":true}"#, headers: auth)
            let text = String(decoding: body, as: UTF8.self)
            #expect(chat.status == .ok && text.contains("\"finish_reason\"") && text.hasSuffix("data: [DONE]\n\n"), "\(text.suffix(600))")
            struct Workers: Decodable { var workers: [ClusterWorker] }
            let worker = try #require(try JSONDecoder().decode(Workers.self, from: try await get(queenURL + "/v1/workers", headers: auth).1).workers.first)
            let hiveAddress = lab.address(of: worker.hive)
            #expect(worker.url.hasPrefix("http://\(hiveAddress):79"), "the worker is announced on its hive's address: \(worker.url)")

            // The token guards every daemon on the network: a wrong one is refused by a hive and its worker.
            for url in ["http://\(hiveAddress):7835/v1/workers", worker.url + "/v1/ready"] {
                let (refused, _) = try await get(url, headers: [("Authorization", "Bearer wrong")])
                #expect(refused.status == .unauthorized, "\(url)")
            }
            // Each daemon listens only on its own host's address.
            for host in ["q", "h1", "h2"] {
                let sockets = try lab.execute(host, ["ss", "-ltnH"]).split(separator: "\n").compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first }
                #expect(!sockets.isEmpty && sockets.allSatisfy { $0.hasPrefix(lab.address(of: host) + ":") }, "\(host): \(sockets)")
            }
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())\nh1: \(cluster.hives["h1"]?.tail() ?? "")")
        }
        await cluster.stop()
        lab.remove()
        #expect(lab.leftovers().isEmpty, "left behind: \(lab.leftovers())")
    }

    /// A hive machine that drops off the network mid-stream, and comes back.
    @Test func aHiveWhoseLinkIsCutEndsItsStreamsIsRoutedAroundAndTakesWorkAgainOnceBack() async throws {
        let lab = try NetworkLab(hosts: ["q", "h1", "h2"])
        defer { lab.remove() }
        // Keep-alives every second: a relay silent for 3 s has stalled.
        let cluster = try await LabCluster.start(lab, queenArguments: ["--keep-alive-secs", "1", "--stall-secs", "3"])
        defer { cluster.kill() }
        let queenURL = cluster.queenURL
        struct Hives: Decodable { var hives: [HiveRecord] }
        let status = { @Sendable (name: String) async throws -> HiveStatus? in
            try JSONDecoder().decode(Hives.self, from: try await get(queenURL + "/v1/hives", headers: [("Authorization", "Bearer \(Self.token)")]).1)
                .hives.first { $0.name == name }?.status
        }
        do {
            try await waitUntil(.seconds(20)) {
                let (first, second) = (try await status("h1"), try await status("h2"))
                return first == .online && second == .online
            }
            let model = "file:" + modelPath
            let warm = try await runTask(queenURL, json: taskJSON(model, extra: #""hive":"h1""#), headers: auth)
            #expect(warm.endsProperly)

            let cut = CutClock()
            let streaming = try await runTask(
                queenURL, json: taskJSON(model, maxTokens: 4000, extra: #""hive":"h1","ignore_eos":true"#), timeout: .seconds(60), headers: auth
            ) { event in
                if case .token(_, 3) = event {
                    try? lab.setLink("h1", up: false)
                    cut.mark()
                }
            }
            let cutAt = try #require(cut.at)
            #expect(streaming.endsProperly, "the stream ends with one terminal event and [DONE]")
            guard case .error(let error)? = streaming.terminal else {
                Issue.record("expected an error event, got \(String(describing: streaming.terminal))")
                throw DaemonError("no error event")
            }
            #expect([.streamStalled, .workerCrashed, .hiveUnreachable].contains(error.code), "\(error)")
            let ended = try #require(streaming.events.last?.at)
            #expect(ended - cutAt < .seconds(8), "ended \(ended - cutAt) after the cut")

            let unreachable = try await waitUntil(.seconds(10)) { try await status("h1") == .unreachable }
            #expect(unreachable - cutAt < .seconds(3 + 2), "unreachable after \(unreachable - cutAt)")
            let elsewhere = try await runTask(queenURL, json: taskJSON(model), headers: auth)
            #expect(elsewhere.endsProperly && SuspendResumeTests.hive(of: elsewhere) == "h2", "\(elsewhere.events.map(\.event))")

            try lab.setLink("h1", up: true)
            let restored = ContinuousClock.now
            let online = try await waitUntil(.seconds(10)) { try await status("h1") == .online }
            #expect(online - restored < .seconds(2 + 1), "online after \(online - restored)")
            let back = try await runTask(queenURL, json: taskJSON(model, extra: #""hive":"h1""#), headers: auth)
            #expect(back.endsProperly && SuspendResumeTests.hive(of: back) == "h1")
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())")
        }
        await cluster.stop()
        lab.remove()
        #expect(lab.leftovers().isEmpty, "left behind: \(lab.leftovers())")
    }

    /// A slow link (50 ms each way on the hive's side, `tc netem`): the stream completes, keep-alives
    /// and all, and tokens arrive as far apart as on a fast link, only later.
    @Test(.enabled(if: NetworkLab.delayUnavailableReason == nil, "\(NetworkLab.delayUnavailableReason ?? "")"))
    func aStreamOverASlowLinkCompletesWithItsTokenGapsUnchanged() async throws {
        let lab = try NetworkLab(hosts: ["q", "h1"])
        defer { lab.remove() }
        let cluster = try await LabCluster.start(lab, queenArguments: ["--keep-alive-secs", "1"])
        defer { cluster.kill() }
        let queenURL = cluster.queenURL
        do {
            struct Hives: Decodable { var hives: [HiveRecord] }
            try await waitUntil(.seconds(20)) {
                try JSONDecoder().decode(Hives.self, from: try await get(queenURL + "/v1/hives", headers: auth).1).hives.contains { $0.status == .online }
            }
            let json = taskJSON("file:" + modelPath, maxTokens: 48, extra: #""ignore_eos":true"#)
            func gaps(_ transcript: TaskTranscript) -> Double {
                let times = transcript.events.compactMap { if case .token = $0.event { $0.at } else { nil } }
                let deltas = zip(times, times.dropFirst()).map { ($1 - $0).milliseconds }.sorted()
                return deltas.isEmpty ? 0 : deltas[deltas.count / 2]
            }
            let fast = try await runTask(queenURL, json: json, headers: auth)
            try lab.delay("h1", milliseconds: 50)
            let slow = try await runTask(queenURL, json: json, headers: auth)
            #expect(fast.endsProperly && slow.endsProperly && slow.tokenCount == 48, "\(slow.stages)")
            let (fastGap, slowGap) = (gaps(fast), gaps(slow))
            // Same decode rate on the hive; the link adds latency, not spacing (no batching of small writes).
            #expect(slowGap < fastGap * 1.5 + 5, "median gap \(slowGap) ms over 50 ms, \(fastGap) ms without")
            let firstSlow = try #require(slow.firstTokenAfter)
            let firstFast = try #require(fast.firstTokenAfter)
            #expect(firstSlow > firstFast + .milliseconds(50), "the delay shows in the first token: \(firstSlow) vs \(firstFast)")
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())")
        }
        await cluster.stop()
        lab.remove()
        #expect(lab.leftovers().isEmpty, "left behind: \(lab.leftovers())")
    }

    /// When a test cut a link.
    final class CutClock: Sendable {
        private let instant = Mutex<ContinuousClock.Instant?>(nil)
        func mark() { instant.withLock { $0 = $0 ?? .now } }
        var at: ContinuousClock.Instant? { instant.withLock { $0 } }
    }
}
