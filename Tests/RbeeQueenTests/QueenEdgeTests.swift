import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOFoundationCompat
import RbeeAPI
import RbeeHTTP
import RbeeTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The edges of a daemon an operator and a hostile client find first: its flags and token file,
/// authentication, oversized bodies, hive names and registrations, peers that are not rbee.
@Suite(.serialized) struct QueenEdgeTests {
    /// Runs a program to its end; its exit status and what it wrote.
    func run(_ program: String, _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(20)) async throws
        -> (status: Int32, output: String)
    {
        let home = try temporaryHome()
        let log = home + "/out.log"
        let daemon = try Daemon(binary(named: program), arguments, url: "", log: log, environment: environment)
        try await waitUntil(timeout) { !daemon.process.isRunning }
        return (daemon.process.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// A queen on a free port, with the given extra arguments; stopped by the caller.
    func queen(_ arguments: [String] = [], environment: [String: String] = [:]) async throws -> Daemon {
        let home = try temporaryHome()
        let port = freePort()
        let queen = try Daemon(
            binary(named: "queen-rbee"), ["--port", "\(port)", "--home", home, "--no-local-hive", "--hive-heartbeat-secs", "1"] + arguments,
            url: "http://127.0.0.1:\(port)", log: home + "/queen.log", environment: environment)
        try await queen.waitHealthy()
        return queen
    }

    @Test func numbersOutOfRangeAreUsageErrorsNamingTheOptionForEveryDaemon() async throws {
        let queen = try await run("queen-rbee", ["--port", "70000", "--no-local-hive"])
        #expect(queen.status == 64 && queen.output.contains("--port must be 0…65535, got 70000"), "\(queen.output)")
        let worker = try await run("llm-worker-rbee", ["--model", modelPath, "--port", "99999", "--parallel", "0"])
        #expect(worker.status == 64 && worker.output.contains("--port") && worker.output.contains("--parallel"), "\(worker.output)")
        let hive = try await run("rbee-hive", ["serve", "--port", "0"], environment: ["RBEE_HIVE_WORKER_IDLE_SECS": "soon"])
        #expect(hive.status == 64 && hive.output.contains("RBEE_HIVE_WORKER_IDLE_SECS must be a number of seconds"), "\(hive.output)")
        let wrapped = try await run("queen-rbee", ["--port", "0", "--no-local-hive"], environment: ["RBEE_QUEEN_MAX_QUEUE": "-5"])
        #expect(wrapped.status == 64 && wrapped.output.contains("RBEE_QUEEN_MAX_QUEUE must be 0…"), "\(wrapped.output)")
    }

    @Test func aTokenFileMustHoldOneTokenAndTheLogShowsOnlyItsFingerprint() async throws {
        let home = try temporaryHome()
        let twoLines = home + "/two-lines"
        try "first-secret\nsecond-secret\n".write(toFile: twoLines, atomically: true, encoding: .utf8)
        let blank = home + "/blank"
        try "   \n".write(toFile: blank, atomically: true, encoding: .utf8)
        for file in [twoLines, blank] {
            _ = chmod(file, 0o600)
            let refused = try await run("queen-rbee", ["--port", "0", "--no-local-hive", "--home", home, "--token-file", file])
            #expect(refused.status == 1, "\(refused.output)")
            #expect(refused.output.contains(file) && !refused.output.contains("secret"), "\(refused.output)")
        }
        let good = home + "/token"
        try "s3cret-token\n".write(toFile: good, atomically: true, encoding: .utf8)
        _ = chmod(good, 0o600)
        let guarded = try await queen(["--token-file", good])
        #expect(guarded.tail().contains("token_fingerprint=") && !guarded.tail().contains("s3cret-token"))
        await guarded.stop()
        let open = try await queen()
        #expect(open.tail().contains("auth is off"))
        await open.stop()
    }

    @Test func aMissingOrWrongTokenIsAChallengedFourOhOneInEachRoutesShape() async throws {
        let queen = try await queen(environment: ["RBEE_API_TOKEN": "right-token"])
        defer { Task { await queen.stop() } }
        let (native, nativeBody) = try await post(queen.url + "/v2/tasks", json: #"{"model":"m","prompt":"x"}"#)
        #expect(native.status == .unauthorized)
        #expect(native.headers.first(name: "WWW-Authenticate") == #"Bearer realm="rbee""#)
        #expect(try decode(ErrorEnvelope.self, nativeBody).error.code == .missingAPIKey)
        let (openAI, openAIBody) = try await post(
            queen.url + "/v1/chat/completions", json: #"{"model":"m","messages":[]}"#, headers: [("Authorization", "Bearer wrong")])
        #expect(openAI.status == .unauthorized)
        #expect(openAI.headers.first(name: "WWW-Authenticate") == #"Bearer realm="rbee", error="invalid_token""#)
        let error = try #require(try JSONSerialization.jsonObject(with: openAIBody) as? [String: [String: Any]])["error"]
        #expect(error?["code"] as? String == "invalid_api_key" && error?["type"] as? String == "authentication_error", "\(String(decoding: openAIBody, as: UTF8.self))")
        let (health, _) = try await get(queen.url + "/health")
        #expect(health.status == .ok, "/health needs no token")
        let metrics = String(decoding: try await get(queen.url + "/metrics", headers: [("Authorization", "Bearer right-token")]).1, as: UTF8.self)
        #expect(metrics.contains(#"rbee_queen_errors_total{code="MISSING_API_KEY"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"rbee_queen_errors_total{code="INVALID_API_KEY"} 1"#), "\(metrics)")
        #expect(prometheusProblems(metrics).isEmpty, "\(prometheusProblems(metrics))")
    }

    @Test func anOversizedBodyIsAFourThirteenInEachRoutesShapeBeforeItIsRead() async throws {
        let queen = try await queen()
        defer { Task { await queen.stop() } }
        let huge = #"{"model":"m","prompt":""# + String(repeating: "a", count: Validation.maxBodyBytes) + #""}"#
        let (native, nativeBody) = try await post(queen.url + "/v2/tasks", json: huge)
        #expect(native.status.code == 413)
        #expect(try decode(ErrorEnvelope.self, nativeBody).error.code == .invalidRequest)
        let (openAI, openAIBody) = try await post(queen.url + "/v1/chat/completions", json: huge)
        #expect(openAI.status.code == 413, "\(String(decoding: openAIBody.prefix(300), as: UTF8.self))")
        #expect(String(decoding: openAIBody, as: UTF8.self).contains(#""type":"invalid_request_error""#))
        // Announced larger than the cap: refused at once, while the body has not even started.
        var request = HTTPClientRequest(url: queen.url + "/v1/completions")
        request.method = .POST
        let (neverSent, bodyStream) = AsyncStream.makeStream(of: ByteBuffer.self)
        defer { bodyStream.finish() }
        request.body = .stream(neverSent, length: .known(Int64(Validation.maxBodyBytes + 1)))
        let sentAt = ContinuousClock.now
        let early = try await http.execute(request, timeout: .seconds(10))
        #expect(early.status.code == 413)
        #expect(ContinuousClock.now - sentAt < .seconds(2))
    }

    @Test func hiveNamesAreDNSNamesAndConcurrentRegistrationsOfOneNameGiveOneHive() async throws {
        let queen = try await queen()
        defer { Task { await queen.stop() } }
        let router = Router()
        router.get("/health") { _, _ in Response.json(HiveHealth(status: "ok", uptimeS: 1, models: 0)) }
        router.get("/v1/workers") { _, _ in Response.json(["workers": [HiveWorkerInfo]()]) }
        router.get("/v1/models") { _, _ in Response.json(["models": [ModelInfo]()]) }
        let hive = await StandInServer.start(router)
        defer { Task { await hive.stop() } }
        let statuses = try await withThrowingTaskGroup(of: UInt.self) { group in
            for _ in 0..<3 {
                group.addTask { try await post(queen.url + "/v1/hives", json: #"{"name":"ws-1.home.arpa","url":"\#(hive.url)"}"#).0.status.code }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses.sorted() == [201, 409, 409], "\(statuses)")
        struct List: Decodable { var hives: [HiveRecord] }
        let hives = try await get(queen.url + "/v1/hives", as: List.self).hives
        #expect(hives.map(\.name) == ["ws-1.home.arpa"])
        #expect(hives.first?.version == RbeeVersion.version && hives.first?.apiVersion == RbeeVersion.apiVersion, "the registry keeps the hive's version")
        for bad in ["-a.b", "a..b", String(repeating: "x", count: 65), "under_score"] {
            let (refused, _) = try await post(queen.url + "/v1/hives", json: #"{"name":"\#(bad)","url":"\#(hive.url)"}"#)
            #expect(refused.status == .badRequest, "\(bad)")
        }
    }

    @Test func aPeerThatIsNotAnRbeeHiveIsNamedAsSuch() async throws {
        let queen = try await queen()
        defer { Task { await queen.stop() } }
        let garbage = Router()
        garbage.get("/health") { _, _ in Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "<html>not a hive</html>"))) }
        let other = await StandInServer.start(garbage)
        defer { Task { await other.stop() } }
        let (badAnswer, badBody) = try await post(queen.url + "/v1/hives", json: #"{"name":"other","url":"\#(other.url)"}"#)
        #expect(badAnswer.status.code == 502, "\(String(decoding: badBody, as: UTF8.self))")
        let badError = try decode(ErrorEnvelope.self, badBody).error
        #expect(badError.code == .hiveUnreachable && badError.message.contains("not as rbee"))

        let newer = Router()
        newer.get("/health") { _, _ in
            Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status":"ok","version":"9.0.0","api_version":99,"uptime_s":1,"models":0}"#)))
        }
        let future = await StandInServer.start(newer)
        defer { Task { await future.stop() } }
        let (mismatch, mismatchBody) = try await post(queen.url + "/v1/hives", json: #"{"name":"future","url":"\#(future.url)"}"#)
        #expect(mismatch.status.code == 409)
        let error = try decode(ErrorEnvelope.self, mismatchBody).error
        #expect(error.code == .versionMismatch)
        #expect(error.details["hive_api_version"] == 99 && error.details["queen_api_version"] == .number(Double(RbeeVersion.apiVersion)))
        #expect(error.message.contains("9.0.0") && error.message.contains("99"))

        // Only what every rbee /health has: still an rbee hive, of another version.
        let bare = Router()
        bare.get("/health") { _, _ in
            Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status": "ok", "version": "99.0.0", "api_version": 99}"#)))
        }
        let minimal = await StandInServer.start(bare)
        defer { Task { await minimal.stop() } }
        let (bareAnswer, bareBody) = try await post(queen.url + "/v1/hives", json: #"{"name":"minimal","url":"\#(minimal.url)"}"#)
        #expect(bareAnswer.status.code == 409, "\(String(decoding: bareBody, as: UTF8.self))")
        let bareError = try decode(ErrorEnvelope.self, bareBody).error
        #expect(bareError.code == .versionMismatch && bareError.details["hive_version"] == "99.0.0")
        #expect(bareError.details["queen_version"] == .string(RbeeVersion.version), "\(bareError)")
    }

    /// A stand-in hive that keeps the `X-Request-Deadline` each route was called with.
    final class SeenHeaders: Sendable {
        let values = Mutex<[String: String]>([:])
    }

    @Test func theRequestDeadlineReachesTheHiveOnSpawnsAndDownloads() async throws {
        let queen = try await queen()
        defer { Task { await queen.stop() } }
        let seen = SeenHeaders()
        let deadlineName = HTTPField.Name("X-Request-Deadline")!
        let router = Router()
        router.get("/health") { _, _ in
            Response.json(HiveHealth(status: "ok", uptimeS: 1, models: 0, hiveID: "hive-stand-in"))
        }
        router.get("/v1/workers") { _, _ in #"{"workers":[]}"# }
        router.get("/v1/models") { _, _ in #"{"models":[],"catalog_version":1}"# }
        for path in ["/v1/workers/spawn", "/v1/models/download"] {
            router.post(RouterPath(path)) { request, _ -> Response in
                seen.values.withLock { $0[path] = request.headers[deadlineName] ?? "none" }
                return Response.error(RbeeError(.insufficientDisk, "no room here"), correlationID: nil)
            }
        }
        let hive = await StandInServer.start(router)
        defer { Task { await hive.stop() } }
        let (added, addedBody) = try await post(queen.url + "/v1/hives", json: #"{"name":"stand-in","url":"\#(hive.url)"}"#)
        #expect(added.status == .created, "\(String(decoding: addedBody, as: UTF8.self))")

        let formatter = ISO8601DateFormatter()
        let deadline = formatter.string(from: Date().addingTimeInterval(120))
        let (task, taskBody) = try await post(
            queen.url + "/v2/tasks", json: #"{"model":"hf:org/repo:m.gguf","prompt":"x","hive":"stand-in"}"#, headers: [("X-Request-Deadline", deadline)])
        #expect(task.status == .ok && String(decoding: taskBody, as: UTF8.self).contains("INSUFFICIENT_DISK"), "\(String(decoding: taskBody, as: UTF8.self))")
        let (pull, pullBody) = try await post(
            queen.url + "/v1/models/pull", json: #"{"model":"hf:org/repo:m.gguf","hive":"stand-in"}"#, headers: [("X-Request-Deadline", deadline)])
        #expect(pull.status.code == 507, "\(String(decoding: pullBody, as: UTF8.self))")
        let headers = seen.values.withLock { $0 }
        #expect(headers["/v1/workers/spawn"] == deadline && headers["/v1/models/download"] == deadline, "\(headers)")
    }
}
