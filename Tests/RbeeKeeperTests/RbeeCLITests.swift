import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import RbeeAPI
import RbeeTestSupport
import Synchronization
import Testing
import Hummingbird

#if canImport(Glibc)
import Glibc
#endif

/// `rbee` run as a user runs it: by name through `PATH`, from a working directory of its own
/// (`PathLaunch`), as a subprocess with stdout and stderr apart, and its exit code.
final class RbeeRun: Sendable {
    private final class Output: Sendable {
        let value = Mutex((stdout: Data(), stderr: Data()))
    }

    let process = Process()
    private let output = Output()
    private let input = Pipe()

    /// `input` is written to the program's standard input, which stays open unless `closeInput`.
    init(_ arguments: [String], environment: [String: String], input text: String = "", closeInput: Bool = true) throws {
        let launch = try PathLaunch("rbee", arguments, environment: environment)
        process.executableURL = URL(fileURLWithPath: launch.executable)
        process.arguments = launch.arguments
        process.environment = ProcessInfo.processInfo.environment.merging(launch.environment) { $1 }
        process.currentDirectoryURL = URL(fileURLWithPath: launch.workingDirectory)
        let out = Pipe()
        let err = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        out.fileHandleForReading.readabilityHandler = { [output] handle in
            let data = handle.availableData
            output.value.withLock { $0.stdout.append(data) }
        }
        err.fileHandleForReading.readabilityHandler = { [output] handle in
            let data = handle.availableData
            output.value.withLock { $0.stderr.append(data) }
        }
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        if closeInput { try input.fileHandleForWriting.close() }
    }

    var stdout: String { String(decoding: output.value.withLock { $0.stdout }, as: UTF8.self) }
    var stderr: String { String(decoding: output.value.withLock { $0.stderr }, as: UTF8.self) }

    /// The exit status, once the process ended (nil after `timeout`).
    func wait(timeout: Duration = .seconds(120)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            process.terminate()
            return nil
        }
        try? await Task.sleep(for: .milliseconds(50))  // the last pipe reads
        return process.terminationStatus
    }
}

func workerProcesses() -> Set<String> {
    Set(processes(containing: "llm-worker-rbee").filter { !$0.contains("rbeePackageTests") }.map { String($0.prefix { $0 != ":" }) })
}

@Suite(.serialized) struct RbeeCLITests {
    /// With no queen, `rbee infer` starts one (and its hive and worker), streams, and leaves
    /// nothing running.
    @Test func inferStartsWhatItNeedsAndStopsIt() async throws {
        let home = try temporaryHome()
        let workersBefore = workerProcesses()
        let run = try RbeeRun(
            ["infer", "--max-tokens", "12", "--temperature", "0", "The capital of France is"],
            environment: ["RBEE_HOME": home, "RBEE_QUEEN_URL": "http://127.0.0.1:\(freePort())"])
        let status = await run.wait()
        #expect(status == 0, "stderr: \(run.stderr)")
        #expect(!run.stdout.isEmpty, "tokens on stdout")
        #expect(!run.stdout.contains("tokens/s"), "stats belong on stderr")
        #expect(run.stderr.contains("queen-rbee ready"))
        #expect(run.stderr.contains("30/30 layers"), "the default model (SmolLM2-135M-Instruct) loading on stderr: \(run.stderr)")
        #expect(run.stderr.contains("12 tokens,") && run.stderr.contains("time to first token"))
        #expect(!run.stderr.contains("\u{1B}["), "no terminal codes when stderr is not a terminal")
        #expect(processes(containing: home).isEmpty, "left running: \(processes(containing: home))")
        #expect(workerProcesses().subtracting(workersBefore).isEmpty, "workers left: \(workerProcesses().subtracting(workersBefore))")

        // Again with the same home: the registry still names the local hive of the first run, at a
        // port nothing listens on now; the new queen starts a hive of its own all the same.
        let again = try RbeeRun(
            ["infer", "--max-tokens", "4", "--temperature", "0", "The capital of France is"],
            environment: ["RBEE_HOME": home, "RBEE_QUEEN_URL": "http://127.0.0.1:\(freePort())"])
        #expect(await again.wait() == 0, "stderr: \(again.stderr)")
        #expect(again.stderr.contains("4 tokens,"), "\(again.stderr)")
        #expect(processes(containing: home).isEmpty, "left running: \(processes(containing: home))")
    }

    /// The main job's question: `rbee infer --chat` on the default model (the instruct model)
    /// answers it and stops by itself (its end-of-turn token), well before --max-tokens.
    @Test func inferChatOnTheDefaultModelAnswersAndStopsByItself() async throws {
        let home = try temporaryHome()
        let run = try RbeeRun(
            ["infer", "--chat", "--system", "You are a helpful assistant.", "--temperature", "0", "What is the capital of France?"],
            environment: ["RBEE_HOME": home, "RBEE_QUEEN_URL": "http://127.0.0.1:\(freePort())"])
        let status = await run.wait()
        #expect(status == 0, "stderr: \(run.stderr)")
        #expect(run.stdout.contains("Paris"), "\(run.stdout)")
        let stats = run.stderr.split(separator: "\n").last { $0.contains(" tokens, ") }
        let tokens = stats.flatMap { $0.components(separatedBy: " tokens, ").first?.split(separator: " ").last }.flatMap { Int($0) }
        #expect(tokens.map { $0 < 64 } == true, "ended by the model, not by --max-tokens (256): \(String(describing: stats))")
        #expect(processes(containing: home).isEmpty, "left running: \(processes(containing: home))")
        let usage = try RbeeRun(["infer", "--system", "Be brief.", "Hi"], environment: ["RBEE_HOME": home])
        #expect(await usage.wait() == 2 && usage.stderr.contains("--system needs --chat"), "\(usage.stderr)")
    }

    /// With a queen running (itself started through `PATH`, so it finds its hive by itself), `rbee
    /// infer` uses it and leaves it running; Ctrl-C mid-stream exits 130 with the worker's slot
    /// free again within 1 s; errors are one line and exit 1 (2 for usage).
    @Test func runningQueenCtrlCAndErrors() async throws {
        let home = try temporaryHome()
        let port = freePort()
        let modelDirectory = URL(fileURLWithPath: instructModelPath).deletingLastPathComponent().path
        let queen = try Daemon(
            PathLaunch("queen-rbee", ["--port", "\(port)", "--home", home, "--local-hive-port", "0", "--model-dir", modelDirectory]),
            url: "http://127.0.0.1:\(port)", log: home + "/queen.log")
        defer { Task { await queen.stop() } }
        try await queen.waitHealthy()
        let environment = ["RBEE_HOME": home, "RBEE_QUEEN_URL": queen.url]

        let first = try RbeeRun(["infer", "--max-tokens", "4", "Hello"], environment: environment)
        #expect(await first.wait() == 0, "\(first.stderr)")
        #expect(!first.stderr.contains("starting queen-rbee"))
        #expect(queen.process.isRunning, "a queen it did not start stays")

        // Ctrl-C mid-stream.
        let long = try RbeeRun(["infer", "--max-tokens", "3000", "--ignore-eos", "Tell me a long story"], environment: environment)
        try await waitUntil(.seconds(60)) { long.stdout.count > 20 }
        kill(long.process.processIdentifier, SIGINT)
        let interruptedAt = ContinuousClock.now
        #expect(await long.wait(timeout: .seconds(10)) == 130, "\(long.stderr)")
        struct Workers: Decodable { var workers: [ClusterWorker] }
        let worker = try #require(try await get(queen.url + "/v1/workers", as: Workers.self).workers.first)
        let freed = try await waitUntil(.seconds(5)) {
            try await get(worker.url + "/health", as: WorkerHealth.self).slotsBusy == 0
        }
        #expect(freed - interruptedAt < .seconds(1), "slot freed after \(freed - interruptedAt)")

        // Errors: one line on stderr, exit 1; a bad flag is a usage error, exit 2.
        let unknown = try RbeeRun(["infer", "-m", "no-such-model", "Hello"], environment: environment)
        #expect(await unknown.wait() == 1)
        #expect(unknown.stderr.hasPrefix("rbee: error: ") && unknown.stderr.split(separator: "\n").count == 1, "\(unknown.stderr)")
        #expect(unknown.stderr.contains("no-such-model"))
        let unreachable = try RbeeRun(["infer", "--no-start", "Hello"], environment: ["RBEE_HOME": home, "RBEE_QUEEN_URL": "http://127.0.0.1:9"])
        #expect(await unreachable.wait() == 1)
        #expect(unreachable.stderr.hasPrefix("rbee: error: no queen answers at http://127.0.0.1:9"), "\(unreachable.stderr)")
        #expect(unreachable.stderr.split(separator: "\n").count == 1)
        let badFlag = try RbeeRun(["infer", "--max-tokenz", "3", "Hello"], environment: environment)
        #expect(await badFlag.wait() == 2)
        #expect(badFlag.stderr.contains("--max-tokenz"))

        // chat keeps the conversation: the second turn's prompt holds the first turn and its reply.
        let chat = try RbeeRun(
            ["chat", "--verbose", "--max-tokens", "8", "--temperature", "0"], environment: environment,
            input: "My name is Zed.\nWhat is my name?\n/bye\nnot read\n")
        #expect(await chat.wait() == 0, "\(chat.stderr)")
        let turns = chat.stderr.split(separator: "\n").compactMap { line -> (out: Int, prompt: Int)? in
            guard let out = line.split(separator: " ").first.flatMap({ Int($0) }),
                let prompt = line.split(separator: ", prompt ").last?.split(separator: " ").first.flatMap({ Int($0) })
            else { return nil }
            return (out, prompt)
        }
        #expect(turns.count == 2, "one statistics line per reply: \(chat.stderr)")
        if turns.count == 2 {
            #expect(turns[1].prompt > turns[0].prompt + turns[0].out, "\(turns)")
        }
        #expect(!chat.stdout.isEmpty && chat.stdout.hasSuffix("\n"), "replies end their line: \(chat.stdout)")
        // Ctrl-C while chat waits for input leaves at once with 130.
        let idle = try RbeeRun(["chat"], environment: environment, closeInput: false)
        try await Task.sleep(for: .seconds(1))
        kill(idle.process.processIdentifier, SIGINT)
        #expect(await idle.wait(timeout: .seconds(5)) == 130, "\(idle.stderr)")

        // The list commands, as tables and as JSON.
        let ps = try RbeeRun(["ps", "--json"], environment: environment)
        #expect(await ps.wait() == 0)
        let listed = try JSONDecoder().decode([ClusterWorker].self, from: Data(ps.stdout.utf8))
        #expect(listed.map(\.workerID) == [worker.workerID])
        let logs = try RbeeRun(["logs", worker.workerID, "--tail", "100000"], environment: environment)
        #expect(await logs.wait() == 0, "\(logs.stderr)")
        #expect(logs.stdout.contains("model ready"), "the worker's log, through the queen and its hive: \(logs.stdout.suffix(500))")
        let models = try RbeeRun(["models", "list"], environment: environment)
        #expect(await models.wait() == 0)
        #expect(models.stdout.hasPrefix("ID") && models.stdout.contains(instructModelID) && models.stdout.contains("Q4_1"), "\(models.stdout)")
        let hives = try RbeeRun(["hive", "list"], environment: environment)
        #expect(await hives.wait() == 0)
        #expect(hives.stdout.contains("localhost") && hives.stdout.contains("online"), "\(hives.stdout)")
        // A chat template for the model: set on its hive, its worker restarted; then cleared.
        let template = try llamaTemplateDirectory() + "/Qwen-Qwen3-0.6B.jinja"
        let setTemplate = try RbeeRun(["models", "template", instructModelID, template], environment: environment)
        #expect(await setTemplate.wait() == 0, "\(setTemplate.stderr)")
        #expect(setTemplate.stderr.contains("set on localhost; restarted \(worker.workerID)"), "\(setTemplate.stderr)")
        let clearTemplate = try RbeeRun(["models", "template", instructModelID, "--clear"], environment: environment)
        #expect(await clearTemplate.wait() == 0 && clearTemplate.stderr.contains("template cleared on localhost"), "\(clearTemplate.stderr)")
        let both = try RbeeRun(["models", "template", instructModelID, template, "--clear"], environment: environment)
        #expect(await both.wait() == 2, "a file and --clear together is a usage error")

        let stop = try RbeeRun(["queen", "stop"], environment: environment)
        #expect(await stop.wait() == 0)
        let stoppedByCommand = !queen.process.isRunning
        #expect(stoppedByCommand, "rbee queen stop ends the queen")
        await queen.stop(grace: .seconds(5))
        #expect(processes(containing: home).isEmpty, "left running: \(processes(containing: home))")
    }

    /// Each error says what to do: which token to set, that the queen went away mid-answer, that
    /// something other than a queen of this version answers.
    @Test func errorsSayWhatToDo() async throws {
        let home = try temporaryHome()
        let port = freePort()
        let token = "rbee-test-token-" + String(UUID().uuidString.prefix(8))
        let modelDirectory = URL(fileURLWithPath: instructModelPath).deletingLastPathComponent().path
        let queen = try Daemon(
            PathLaunch(
                "queen-rbee", ["--port", "\(port)", "--home", home, "--local-hive-port", "0", "--model-dir", modelDirectory],
                environment: ["RBEE_API_TOKEN": token]),
            url: "http://127.0.0.1:\(port)", log: home + "/queen.log")
        defer { Task { await queen.stop() } }
        try await queen.waitHealthy()
        let base = ["RBEE_HOME": home, "RBEE_QUEEN_URL": queen.url]

        let missing = try RbeeRun(["ps"], environment: base)
        #expect(await missing.wait() == 1)
        #expect(missing.stderr.contains("needs an API token") && missing.stderr.contains("RBEE_API_TOKEN") && missing.stderr.contains("--token-file"), "\(missing.stderr)")
        let wrong = try RbeeRun(["ps"], environment: base.merging(["RBEE_API_TOKEN": "not-the-token"]) { $1 })
        #expect(await wrong.wait() == 1)
        #expect(wrong.stderr.contains("refused the API token from RBEE_API_TOKEN"), "\(wrong.stderr)")
        let file = home + "/token"
        try Data((token + "\n").utf8).write(to: URL(fileURLWithPath: file))
        chmod(file, 0o644)
        let open = try RbeeRun(["ps", "--token-file", file], environment: base)
        #expect(await open.wait() == 2, "a token file others can read is a usage error")
        #expect(open.stderr.contains("chmod 600"), "\(open.stderr)")
        chmod(file, 0o600)
        let fromFile = try RbeeRun(["ps", "--token-file", file], environment: base)
        #expect(await fromFile.wait() == 0, "\(fromFile.stderr)")

        // The queen killed while it streams an answer.
        let long = try RbeeRun(
            ["infer", "--no-start", "--max-tokens", "3000", "--ignore-eos", "Tell me a long story"],
            environment: base.merging(["RBEE_API_TOKEN": token]) { $1 })
        try await waitUntil(.seconds(60)) { long.stdout.count > 20 }
        kill(queen.pid, SIGKILL)
        #expect(await long.wait(timeout: .seconds(10)) == 1)
        #expect(long.stderr.contains("the queen at \(queen.url) went away"), "\(long.stderr)")
        try await waitUntil(.seconds(10)) { processes(containing: home).isEmpty }

        // Something else on the port, and a queen of another API version.
        let router = Router()
        router.get("/health") { _, _ in #"{"status":"ok","version":"9.0.0","api_version":99}"# }
        router.get("/v1/workers") { _, _ in "<html>hello</html>" }
        router.post("/v2/tasks") { _, _ -> Response in Response(status: .notFound, body: .init(byteBuffer: ByteBuffer(string: "<html>no</html>"))) }
        let other = await StandInServer.start(router)
        let newer = try RbeeRun(["infer", "--no-start", "Hello"], environment: ["RBEE_HOME": home, "RBEE_QUEEN_URL": other.url])
        #expect(await newer.wait() == 1)
        #expect(newer.stderr.contains("rbee 9.0.0 (API v99)"), "\(newer.stderr)")
        // Whatever the command, a queen of another version is named with both versions.
        let ps = try RbeeRun(["ps"], environment: ["RBEE_HOME": home, "RBEE_QUEEN_URL": other.url])
        #expect(await ps.wait() == 1)
        #expect(ps.stderr.contains("rbee 9.0.0 (API v99)") && ps.stderr.contains("this rbee is \(RbeeVersion.version)"), "\(ps.stderr)")
        await other.stop()
        let web = Router()
        web.get("/health") { _, _ in "<html>a web server</html>" }
        web.get("/v1/workers") { _, _ in "<html>hello</html>" }
        let server = await StandInServer.start(web)
        let elsewhere = try RbeeRun(["ps"], environment: ["RBEE_HOME": home, "RBEE_QUEEN_URL": server.url])
        #expect(await elsewhere.wait() == 1)
        #expect(elsewhere.stderr.contains("another program is on that port"), "\(elsewhere.stderr)")
        await server.stop()
    }
}
