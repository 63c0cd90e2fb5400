import AsyncHTTPClient
import Foundation
import NIOCore
import RbeeAPI
import RbeeHTTP
import RbeeTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What an operator reads in the logs: a task followed by its correlation id down to the worker,
/// forced kills, refused authentications (bounded, never the token).
@Suite(.serialized) struct OperatorViewTests {
    func lines(_ log: String, containing marks: String...) -> [Substring] {
        log.split(separator: "\n").filter { line in marks.allSatisfy { line.contains($0) } }
    }

    @Test func aTasksCorrelationIdReachesTheWorkersLogAndAForcedKillIsAWarning() async throws {
        let directory = (modelPath as NSString).deletingLastPathComponent
        let cluster = try await Cluster.start(hives: [("h1", ["--model-dir", directory, "--worker-stop-grace-secs", "1"], [:])])
        let h1 = try #require(cluster.hives["h1"])
        do {
            let correlation = "op-" + UUID().uuidString.prefix(8).lowercased()
            let (answer, body) = try await post(
                cluster.queen.url + "/v2/tasks", json: taskJSON("file:" + modelPath, extra: #""hive":"h1","stream":false"#),
                headers: [("X-Correlation-Id", correlation)])
            #expect(answer.status == .ok, "\(String(decoding: body, as: UTF8.self))")
            let worker = try #require(try await cluster.workers().first { $0.hive == "h1" })
            let pid = try #require(worker.pid)
            let (_, logBody) = try await get(cluster.queen.url + "/v1/workers/\(worker.workerID)/logs")
            let workerLog = String(decoding: logBody, as: UTF8.self)
            #expect(!lines(workerLog, containing: "correlation_id=\(correlation)", "inference accepted").isEmpty, "\(workerLog.suffix(2000))")
            #expect(!lines(workerLog, containing: "correlation_id=\(correlation)", "inference ended", "stop_reason=max_tokens").isEmpty)
            #expect(cluster.queen.tail().contains(correlation) && h1.tail().contains("correlation_id=\(correlation)"))

            // A worker that cannot take SIGTERM (stopped) is killed after the 1 s grace: a warning
            // with its pid and the grace it ignored.
            kill(pid, SIGSTOP)
            let deleted = try await delete(cluster.queen.url + "/v1/workers/\(worker.workerID)")
            #expect(deleted.status == .noContent)
            try await waitUntil(.seconds(10)) { kill(pid, 0) != 0 }
            try await waitUntil(.seconds(5)) { !lines(h1.tail(), containing: "ignored SIGTERM").isEmpty }
            let warning = lines(h1.tail(), containing: "ignored SIGTERM")
            #expect(warning.count == 1 && warning.allSatisfy { $0.contains(" warning ") && $0.contains("pid=\(pid)") && $0.contains("grace_s=1.0") }, "\(warning)")
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())\nh1: \(h1.tail())")
        }
        await cluster.stop()
    }

    @Test func refusedAuthenticationsAreWarningsWithTheReasonAndFingerprintAtMostOnePerClientASecond() async throws {
        let home = try temporaryHome()
        let port = freePort()
        let queen = try Daemon(
            binary(named: "queen-rbee"), ["--port", "\(port)", "--home", home, "--no-local-hive"], url: "http://127.0.0.1:\(port)",
            log: home + "/queen.log", environment: ["RBEE_API_TOKEN": "right-token"])
        try await queen.waitHealthy()
        let hives = queen.url + "/v1/hives"
        _ = try await get(hives)
        try await Task.sleep(for: .milliseconds(1100))
        _ = try await get(hives, headers: [("Authorization", "Basic cmJlZTpzZWNyZXQ=")])
        try await Task.sleep(for: .milliseconds(1100))
        // A flood of wrong tokens from one address: one line, the rest counted.
        for _ in 0..<31 {
            let (refused, _) = try await get(hives, headers: [("Authorization", "Bearer wrong-token")])
            #expect(refused.status == .unauthorized)
        }
        try await Task.sleep(for: .milliseconds(1100))
        _ = try await get(hives, headers: [("Authorization", "Bearer wrong-token")])
        try await Task.sleep(for: .milliseconds(200))
        let log = (try? String(contentsOfFile: queen.log, encoding: .utf8)) ?? ""
        await queen.stop()
        let refusals = lines(log, containing: "authentication refused")
        #expect((4...5).contains(refusals.count), "\(refusals)")
        #expect(refusals.allSatisfy { $0.contains(" warning ") && $0.contains("client=127.0.0.1") })
        #expect(refusals.first?.contains("reason=missing") == true && refusals.dropFirst().first?.contains("reason=malformed") == true, "\(refusals)")
        let wrong = refusals.filter { $0.contains("reason=wrong") }
        #expect(wrong.count >= 2 && wrong.allSatisfy { $0.contains("token_fingerprint=\(APIToken("wrong-token").fingerprint)") })
        let notLogged = refusals.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("refusals_not_logged=") }.flatMap { Int($0.dropFirst("refusals_not_logged=".count)) }
        }
        #expect(notLogged.reduce(0, +) + refusals.count == 34, "every refusal is a line or counted in one: \(refusals)")
        #expect(!log.contains("wrong-token") && !log.contains("right-token") && !log.contains("cmJlZTpzZWNyZXQ="))
    }
}
