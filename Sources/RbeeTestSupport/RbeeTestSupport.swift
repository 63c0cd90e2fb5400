import AsyncHTTPClient
import Foundation
import NIOCore
import RbeeHTTP

#if canImport(Glibc)
import Glibc
#endif

// What every test target shares: the real model, the HTTP client, temporary homes, waits, and
// this package's programs run as real child processes. Not part of any product.

/// Where `scripts/fetch-model.sh` puts the project's models: RBEE_MODEL_DIR, else RBEE_CACHE/models.
private let fetchedModels: String = {
    let environment = ProcessInfo.processInfo.environment
    let cache = environment["RBEE_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache/rbee"
    return environment["RBEE_MODEL_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? cache + "/models"
}()
/// The base model (Gemma 3 270M, gemma3 architecture, no chat template in its file), which the
/// tests of completion mechanics use; `RBEE_TEST_MODEL` overrides it.
public let modelPath: String = ProcessInfo.processInfo.environment["RBEE_TEST_MODEL"] ?? fetchedModels + "/gemma-3-270m-q4_k_m.gguf"
/// The instruction-tuned model (SmolLM2-135M-Instruct, llama architecture, a chat template in its
/// header): the CLI's default and the tests of chat behaviour; `RBEE_TEST_INSTRUCT_MODEL` overrides it.
public let instructModelPath: String =
    ProcessInfo.processInfo.environment["RBEE_TEST_INSTRUCT_MODEL"] ?? fetchedModels + "/SmolLM2-135M-Instruct.Q4_1.gguf"
/// The catalog id a hive gives the instruct model.
public let instructModelID = "SmolLM2-135M-Instruct.Q4_1"
public let modelDirectory = (modelPath as NSString).deletingLastPathComponent
/// The catalog id a hive gives the model.
public let modelID = "gemma-3-270m-q4_k_m"
public let modelSHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
public let modelSize = 253_113_024
/// The model as a Hugging Face reference, which `ModelServer` serves at `modelURLPath`.
public let modelRef = "hf:google/gemma-3-270m:gemma-3-270m-q4_k_m.gguf"
public let modelURLPath = "/google/gemma-3-270m/resolve/main/gemma-3-270m-q4_k_m.gguf"

/// The client every test uses, with a connection per concurrent stream.
public let http: HTTPClient = {
    var configuration = HTTPClient.Configuration()
    configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 128
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}()

/// A fresh directory under the temporary directory (`scripts/test.sh` removes them all).
public func temporaryHome() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("rbee-test-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The directory this package's programs were built into, beside the tests.
public var programDirectory: String { (binary(named: "rbee") as NSString).deletingLastPathComponent }

/// How a user starts one of this package's programs: by name, found through `PATH` (with the
/// build directory in front), from a working directory of its own. Nothing else points the
/// programs at each other, so each must find its siblings by itself.
public struct PathLaunch: Sendable {
    public let executable = "/usr/bin/env"
    public let arguments: [String]
    public let environment: [String: String]
    public let workingDirectory: String

    public init(_ program: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        self.arguments = [program] + arguments
        var environment = environment
        environment["PATH"] = programDirectory + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        self.environment = environment
        workingDirectory = try temporaryHome()
    }
}

/// An executable of this package, in the build directory the tests were built into.
public func binary(named name: String) -> String {
    var directory = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
    for _ in 0..<3 {
        let candidate = directory.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        directory.deleteLastPathComponent()
    }
    return name
}

/// A port the system hands out as free now.
public func freePort() -> Int { LocalPort.any() ?? 0 }

/// A program of this package (or any executable) running as a real child process, its output in
/// a log file under its home.
public final class Daemon: Sendable {
    public let process: Process
    public let url: String
    public let log: String

    public init(
        _ executable: String, _ arguments: [String], url: String, log: String, environment: [String: String] = [:], workingDirectory: String? = nil
    ) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        self.url = url
        self.log = log
        try process.run()
    }

    /// Starts a program as a user would (`PathLaunch`).
    public convenience init(_ launch: PathLaunch, url: String, log: String) throws {
        try self.init(launch.executable, launch.arguments, url: url, log: log, environment: launch.environment, workingDirectory: launch.workingDirectory)
    }

    public var pid: Int32 { process.processIdentifier }

    /// Waits until `GET /health` answers.
    public func waitHealthy(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !process.isRunning { throw DaemonError("\(url) exited: \(tail())") }
            if let response = try? await http.execute(HTTPClientRequest(url: url + "/health"), timeout: .seconds(1)),
                response.status == .ok
            {
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw DaemonError("\(url) did not become healthy: \(tail())")
    }

    public func signal(_ signal: Int32) { kill(pid, signal) }

    /// SIGTERM, then SIGKILL after `grace`; true when it ended within the grace.
    @discardableResult
    public func stop(grace: Duration = .seconds(20)) async -> Bool {
        guard process.isRunning else { return true }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + grace
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return false
        }
        return true
    }

    public func tail() -> String {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return String(text.suffix(3000))
    }
}

public struct DaemonError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Processes whose command line contains `marker` (to prove nothing was left behind).
public func processes(containing marker: String) -> [String] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { pid -> String? in
        guard Int(pid) != nil, let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let command = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        return command.contains(marker) ? "\(pid): \(command)" : nil
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns the time it took,
/// or nil when it never held.
public func waitFor(timeout: Duration, _ condition: () async throws -> Bool) async throws -> Duration? {
    let start = ContinuousClock.now
    while ContinuousClock.now - start < timeout {
        if try await condition() { return ContinuousClock.now - start }
        try await Task.sleep(for: .milliseconds(10))
    }
    return nil
}

/// `waitFor`, failing when the condition never held; returns when it did.
@discardableResult
public func waitUntil(_ timeout: Duration, _ condition: () async throws -> Bool) async throws -> ContinuousClock.Instant {
    guard try await waitFor(timeout: timeout, condition) != nil else { throw DaemonError("condition not met within \(timeout)") }
    return .now
}
