import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import RbeeAPI
import RbeeHTTP
import RbeeHive
import RbeeTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Where a hive used to stall, leak or say too little: huge files, dying and frozen workers,
/// shutdown under way, corrupt or oversized downloads.
@Suite(.serialized) struct HiveEdgeTests {
    /// A model file of `size` bytes whose header is the real model's: the rest is a hole.
    static func sparseModel(in directory: String, name: String, size: Int) throws -> String {
        let path = directory + "/" + name
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: modelPath, toPath: path)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(size))
        try handle.close()
        return path
    }

    @Test func aHugeModelIsRefusedAtOnceFromItsHeaderWhileTheHiveKeepsAnswering() async throws {
        let home = try temporaryHome()
        let huge = try Self.sparseModel(in: home + "/models", name: "huge.gguf", size: 2 << 40)
        let hive = try await SupervisionTests.startHive(home: home)
        let asked = ContinuousClock.now
        async let spawn = post(hive.baseURL + "/v1/workers/spawn", json: #"{"model_ref":"file:\#(huge)"}"#)
        // Other requests are answered meanwhile.
        let (health, _) = try await get(hive.baseURL + "/health")
        #expect(health.status == .ok && ContinuousClock.now - asked < .seconds(1))
        let (refused, body) = try await spawn
        #expect(ContinuousClock.now - asked < .seconds(3), "answered after \(ContinuousClock.now - asked)")
        #expect(refused.status.code == 507, "\(String(decoding: body, as: UTF8.self))")
        let error = try decode(ErrorEnvelope.self, body).error
        #expect(error.code == .insufficientRAM && error.details["bytes_needed"].map { if case .number(let n) = $0 { n > 2e12 } else { false } } == true)
        // The file is catalogued from its header; its hash runs in the background and stops with the hive.
        let info = try #require(try await hive.service.provisioner.catalog.model(id: "huge"))
        #expect(info.sizeBytes == 2 << 40 && info.sha256.isEmpty && info.layerCount == 18)
        let stopping = ContinuousClock.now
        try await hive.stop()
        #expect(ContinuousClock.now - stopping < .seconds(5))
    }

    func spawn(_ hive: RunningHive, _ reference: String = "file:" + modelPath, reuse: Bool = false) async throws -> HiveWorkerInfo {
        let (response, body) = try await post(
            hive.baseURL + "/v1/workers/spawn", json: #"{"model_ref":"\#(reference)","parallel":1,"ctx_size":256,"reuse":\#(reuse)}"#)
        try #require(response.status == .accepted, "\(String(decoding: body, as: UTF8.self))")
        return try decode(HiveWorkerInfo.self, body)
    }

    func state(_ hive: RunningHive, _ id: String) -> HiveWorkerInfo? { hive.service.supervisor.list().first { $0.workerID == id } }

    /// The data payloads of an SSE response, to its end.
    func events(_ url: String) async throws -> [String] {
        let response = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        var parser = SSEParser()
        var data: [String] = []
        for try await chunk in response.body {
            for case .data(let payload) in parser.feed(chunk.readableBytesView) { data.append(payload) }
        }
        return data
    }

    @Test func aWorkerThatDiesWhileLoadingEndsItsProgressWithAnError() async throws {
        let hive = try await SupervisionTests.startHive()
        let worker = try await spawn(hive)
        let pid = try #require(worker.pid)
        kill(pid, SIGSTOP)  // frozen mid-load
        async let progress = events(worker.progressURL)
        try await Task.sleep(for: .milliseconds(300))
        kill(pid, SIGKILL)
        let seen = try await progress
        #expect(seen.last == "[DONE]")
        let last = try decode(LoadingProgress.self, Data(try #require(seen.dropLast().last).utf8))
        guard case .failed(let error) = last else {
            Issue.record("expected an error stage, got \(seen)")
            return
        }
        #expect(error.code == .workerCrashed && error.message.contains("signal 9"))
        // A late subscriber gets the same end at once.
        #expect(try await events(worker.progressURL).suffix(2).first?.contains("WORKER_CRASHED") == true)
        let metrics = String(decoding: try await get(hive.baseURL + "/metrics").1, as: UTF8.self)
        #expect(metrics.contains(#"rbee_hive_worker_stops_total{reason="crashed"} 1"#), "\(metrics)")
        try await hive.stop()
    }

    @Test func aDeleteAnswersAtOnceAndTheListShowsTheEnd() async throws {
        let hive = try await SupervisionTests.startHive { $0.stopGrace = .seconds(2) }
        let worker = try await spawn(hive)
        try await waitUntil(.seconds(20)) { state(hive, worker.workerID)?.state == .ready }
        let pid = try #require(worker.pid)
        kill(pid, SIGSTOP)  // it will not hear SIGTERM: the stop takes the whole grace period
        let asked = ContinuousClock.now
        var request = HTTPClientRequest(url: hive.baseURL + "/v1/workers/" + worker.workerID)
        request.method = .DELETE
        let response = try await http.execute(request, timeout: .seconds(10))
        let body = Data(buffer: try await response.body.collect(upTo: 1 << 20))
        #expect(response.status == .accepted && ContinuousClock.now - asked < .milliseconds(500))
        #expect(try decode(HiveWorkerInfo.self, body).state == .stopping)
        try await waitUntil(.seconds(10)) { state(hive, worker.workerID)?.state == .stopped }
        #expect(state(hive, worker.workerID)?.exit == "signal 9", "SIGKILL after the grace period")
        let metrics = String(decoding: try await get(hive.baseURL + "/metrics").1, as: UTF8.self)
        #expect(metrics.contains(#"rbee_hive_spawns_total{outcome="launched"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"rbee_hive_worker_stops_total{reason="requested"} 1"#), "\(metrics)")
        #expect(prometheusProblems(metrics).isEmpty, "\(prometheusProblems(metrics))")
        try await hive.stop()
    }

    /// `count` consecutive ports free now, above the default worker range.
    static func freePorts(_ count: Int) throws -> ClosedRange<Int> {
        for base in stride(from: 31_000, to: 60_000, by: 97) where (base..<base + count).allSatisfy({ LocalPort.isFree($0) }) {
            return base...(base + count - 1)
        }
        throw DaemonError("no \(count) consecutive free ports")
    }

    func port(of worker: HiveWorkerInfo?) -> Int? { worker.flatMap { URL(string: $0.url)?.port } }

    /// Two hives on one host share a port range of two: both start workers at once, so both try
    /// the first port; the worker that finds it taken is started again on the next.
    @Test func twoHivesSharingAPortRangeStartWorkersAtOnceAndACollisionMovesToTheNextPort() async throws {
        let range = try Self.freePorts(2)
        let a = try await SupervisionTests.startHive { $0.workerPorts = range }
        let b = try await SupervisionTests.startHive { $0.workerPorts = range }
        async let first = spawn(a)
        async let second = spawn(b)
        let (one, two) = try await (first, second)
        try await waitUntil(.seconds(30)) { state(a, one.workerID)?.state == .ready && state(b, two.workerID)?.state == .ready }
        let ports = [port(of: state(a, one.workerID)), port(of: state(b, two.workerID))]
        #expect(Set(ports.compactMap { $0 }) == Set(range), "\(ports) in \(range)")
        var logs: [String] = []
        for (hive, worker) in [(a, one), (b, two)] { logs.append(String(decoding: try await get(hive.baseURL + "/v1/workers/\(worker.workerID)/logs").1, as: UTF8.self)) }
        #expect(logs.contains { $0.contains("port taken") }, "the second worker found the first port taken and moved on")
        try await a.stop()
        try await b.stop()
    }

    @Test func aFullPortRangeIsAFiveOhSevenNamingTheRange() async throws {
        let range = try Self.freePorts(1)
        // Another program listens on the only port.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var yes: Int32 = 1
        _ = setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(range.lowerBound).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(listener, 1) == 0)
        let hive = try await SupervisionTests.startHive { $0.workerPorts = range }
        let (response, body) = try await post(
            hive.baseURL + "/v1/workers/spawn", json: #"{"model_ref":"file:\#(modelPath)","parallel":1,"ctx_size":256}"#)
        #expect(response.status.code == 507, "\(String(decoding: body, as: UTF8.self))")
        let error = try decode(ErrorEnvelope.self, body).error
        #expect(error.code == .noPort && error.details["worker_ports"] == .string("\(range.lowerBound)-\(range.upperBound)"), "\(error)")
        #expect(hive.service.supervisor.list().isEmpty, "nothing was started")
        try await hive.stop()
    }

    /// A worker listens where its hive does and is announced with the hive's address, not with
    /// loopback (a queen on another machine could not reach that). 127.0.0.2 stands in for the
    /// hive machine's network address here.
    @Test func workersBindAndAreAnnouncedWithTheHivesAddress() async throws {
        let hive = try await RunningHive.start(server: nil) {
            $0.host = "127.0.0.2"
            $0.extraModelDirectories = [(modelPath as NSString).deletingLastPathComponent]
            $0.supervision = SupervisionSettings(workerBinary: binary(named: "llm-worker-rbee"))
        }
        #expect(hive.baseURL.hasPrefix("http://127.0.0.2:"))
        let worker = try await spawn(hive)
        try await waitUntil(.seconds(30)) { state(hive, worker.workerID)?.state == .ready }
        let url = try #require(state(hive, worker.workerID)?.url)
        let port = try #require(URL(string: url)?.port)
        #expect(url == "http://127.0.0.2:\(port)" && (7900...7999).contains(port), "\(url)")
        let (health, _) = try await get(url + "/health")
        #expect(health.status == .ok)
        // Bound to the hive's address only: the same port on 127.0.0.1 is another address.
        #expect(LocalPort.isFree(port, host: "127.0.0.1") && !LocalPort.isFree(port, host: "127.0.0.2"))
        try await hive.stop()
    }

    /// The two models of the project, two architectures, loaded side by side by one hive.
    @Test func theBaseAndTheInstructModelRunSideBySideOnOneHive() async throws {
        let hive = try await SupervisionTests.startHive {
            $0.heartbeatInterval = .seconds(5)
        }
        async let base = spawn(hive)
        async let instruct = spawn(hive, "file:" + instructModelPath)
        let workers = try await [base, instruct]
        try await waitUntil(.seconds(30)) { workers.allSatisfy { state(hive, $0.workerID)?.state == .ready } }
        #expect(Set(workers.map(\.modelID)) == [modelID, instructModelID], "\(workers.map(\.modelID))")
        for worker in workers {
            let url = try #require(state(hive, worker.workerID)?.url)
            let (answer, body) = try await post(url + "/v1/inference", json: #"{"prompt":"Hello","max_tokens":4,"stream":false}"#)
            #expect(answer.status == .ok, "\(worker.modelID): \(String(decoding: body, as: UTF8.self))")
        }
        try await hive.stop()
    }

    /// A spawn's `chat_template_file` replaces the model's template in that worker: the hive's
    /// worker list says so, the worker renders with it, a plain spawn of the model does not reuse
    /// that worker, and a path the hive cannot read is a 400 naming the field.
    @Test func aSpawnCanGiveTheWorkerAChatTemplateFile() async throws {
        let hive = try await SupervisionTests.startHive { $0.heartbeatInterval = .seconds(5) }
        let file = try llamaTemplateDirectory() + "/Qwen-Qwen3-0.6B.jinja"
        let (response, body) = try await post(
            hive.baseURL + "/v1/workers/spawn",
            json: #"{"model_ref":"file:\#(instructModelPath)","parallel":1,"ctx_size":512,"chat_template_file":"\#(file)"}"#)
        try #require(response.status == .accepted, "\(String(decoding: body, as: UTF8.self))")
        let templated = try decode(HiveWorkerInfo.self, body)
        let plain = try await spawn(hive, "file:" + instructModelPath, reuse: true)
        #expect(plain.workerID != templated.workerID, "a worker with another template is not reused")
        try await waitUntil(.seconds(30)) { [plain, templated] in
            [plain, templated].allSatisfy { state(hive, $0.workerID)?.state == .ready }
        }
        #expect(state(hive, templated.workerID)?.chatTemplate == ChatTemplateInfo(source: .file, supportsTools: true, supportsThinking: true))
        #expect(state(hive, plain.workerID)?.chatTemplate?.source == .gguf)
        let url = try #require(state(hive, templated.workerID)?.url)
        let (_, rendered) = try await post(
            url + "/apply-template", json: #"{"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"enable_thinking":false}}"#)
        #expect(try decode(AppliedTemplate.self, rendered).prompt.hasSuffix("<think>\n\n</think>\n\n"), "\(String(decoding: rendered, as: UTF8.self))")
        let (refused, refusal) = try await post(
            hive.baseURL + "/v1/workers/spawn", json: #"{"model_ref":"file:\#(instructModelPath)","chat_template_file":"/no/such.jinja"}"#)
        #expect(refused.status == .badRequest && String(decoding: refusal, as: UTF8.self).contains(#""field":"chat_template_file""#))
        try await hive.stop()
    }

    /// A chat template set for a model in the hive's catalog (as Ollama's Modelfile sets one) is
    /// used by every later worker of it, also after the hive restarts; clearing it goes back to the
    /// GGUF's; a template that does not parse fails the next worker's load with MODEL_LOAD_FAILED.
    @Test func aModelsChatTemplateIsKeptInTheCatalog() async throws {
        let home = try temporaryHome()
        var hive = try await SupervisionTests.startHive(home: home) { $0.heartbeatInterval = .seconds(5) }
        let first = try await spawn(hive, "file:" + instructModelPath, reuse: true)
        let id = first.modelID
        let qwen3 = try String(contentsOfFile: try llamaTemplateDirectory() + "/Qwen-Qwen3-0.6B.jinja", encoding: .utf8)
        var templateURL = hive.baseURL + "/v1/models/\(id)/template"
        let (set, setBody) = try await send(.PUT, templateURL, json: try String(decoding: JSONEncoder().encode(ChatTemplateUpdate(template: qwen3)), as: UTF8.self))
        #expect(set.status == .ok, "\(String(decoding: setBody, as: UTF8.self))")
        let sha = try #require(try decode(ModelInfo.self, setBody).chatTemplateSHA256)
        #expect(try await get(hive.baseURL + "/v1/models/\(id)", as: ModelInfo.self).chatTemplateSHA256 == sha)

        func thinkingOffRendering(_ worker: HiveWorkerInfo) async throws -> String {
            try await waitUntil(.seconds(30)) { state(hive, worker.workerID)?.state == .ready }
            let url = try #require(state(hive, worker.workerID)?.url)
            let (_, body) = try await post(
                url + "/apply-template", json: #"{"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"enable_thinking":false}}"#)
            return try decode(AppliedTemplate.self, body).prompt
        }
        let templated = try await spawn(hive, "file:" + instructModelPath, reuse: true)
        #expect(templated.workerID != first.workerID, "the worker without the template is not handed out for it")
        #expect(try await thinkingOffRendering(templated).hasSuffix("<think>\n\n</think>\n\n"))
        #expect(state(hive, templated.workerID)?.chatTemplate?.source == .file)

        try await hive.stop()
        hive = try await SupervisionTests.startHive(home: home) { $0.heartbeatInterval = .seconds(5) }
        templateURL = hive.baseURL + "/v1/models/\(id)/template"
        let afterRestart = try await spawn(hive, "file:" + instructModelPath)
        #expect(try await thinkingOffRendering(afterRestart).hasSuffix("<think>\n\n</think>\n\n"), "the template outlives the hive's restart")

        let (cleared, clearedBody) = try await send(.DELETE, templateURL)
        #expect(cleared.status == .ok)
        #expect(try decode(ModelInfo.self, clearedBody).chatTemplateSHA256 == nil)
        let plain = try await spawn(hive, "file:" + instructModelPath)
        #expect(try await thinkingOffRendering(plain).hasSuffix("<|im_start|>assistant\n"))
        #expect(state(hive, plain.workerID)?.chatTemplate?.source == .gguf)

        let (unknown, _) = try await send(.PUT, hive.baseURL + "/v1/models/no-such-model/template", json: #"{"template":"x"}"#)
        #expect(unknown.status == .notFound)
        let (empty, emptyBody) = try await send(.PUT, templateURL, json: #"{"template":""}"#)
        #expect(empty.status == .badRequest && String(decoding: emptyBody, as: UTF8.self).contains(#""field":"template""#))

        _ = try await send(.PUT, templateURL, json: #"{"template":"{% for m in messages %}{{ m.content }"}"#)
        let broken = try await spawn(hive, "file:" + instructModelPath)
        try await waitUntil(.seconds(30)) { state(hive, broken.workerID)?.state == .failed }
        let failure = try #require(state(hive, broken.workerID)?.error)
        #expect(failure.code == .modelLoadFailed && failure.message.contains("chat template"), "\(failure)")
        try await hive.stop()
    }

    @Test func aFrozenWorkerIsFoundByProbesWithinThreeIntervals() async throws {
        let hive = try await SupervisionTests.startHive {
            $0.heartbeatInterval = .seconds(30)  // heartbeats would take 90 s to notice
            $0.healthProbeInterval = .milliseconds(500)
            $0.stopGrace = .milliseconds(200)
        }
        let worker = try await spawn(hive)
        try await waitUntil(.seconds(20)) { state(hive, worker.workerID)?.state == .ready }
        kill(try #require(worker.pid), SIGSTOP)
        let frozenAt = ContinuousClock.now
        try await waitUntil(.seconds(10)) { [.stopping, .stopped, nil].contains(state(hive, worker.workerID)?.state) }
        // Three failed probes take 1.5-2 s; the bound leaves room for a busy machine and is
        // still far below the 90 s heartbeats would need.
        #expect(ContinuousClock.now - frozenAt < .seconds(5), "found after \(ContinuousClock.now - frozenAt)")
        try await hive.stop()
    }

    @Test func aSpawnUnderWayWhenTheHiveStopsEndsCancelledAndStartsNothing() async throws {
        let server = try await ModelServer.start()
        server.set(.init(chunkDelay: .milliseconds(200)))
        let hive = try await SupervisionTests.startHive(server: server)
        let worker = try await spawn(hive, modelRef)
        #expect(worker.state == .starting)
        try await Task.sleep(for: .milliseconds(300))
        try await hive.stop()
        let ended = try #require(state(hive, worker.workerID))
        #expect(ended.state == .failed && ended.error?.code == .cancelled, "\(ended)")
        #expect(ended.pid == nil, "no worker process was started")
        await server.stop()
    }

    @Test func eachWorkersLogIsKeptInAFileTheHiveServes() async throws {
        let hive = try await SupervisionTests.startHive()
        let worker = try await spawn(hive)
        try await waitUntil(.seconds(20)) { state(hive, worker.workerID)?.state == .ready }
        let (response, body) = try await get(hive.baseURL + "/v1/workers/\(worker.workerID)/logs")
        #expect(response.status == .ok)
        #expect(String(decoding: body, as: UTF8.self).contains("model ready"), "\(String(decoding: body, as: UTF8.self))")
        #expect(FileManager.default.fileExists(atPath: hive.home + "/logs/workers/\(worker.workerID).log"))
        let (missing, _) = try await get(hive.baseURL + "/v1/workers/worker-none/logs")
        #expect(missing.status == .notFound)
        try await hive.stop()
    }
}
