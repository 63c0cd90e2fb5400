import Foundation
import NIOHTTP1
import RbeeAPI
import RbeeHTTP

#if canImport(Glibc)
import Glibc
#endif

/// Where the queen is, and how to reach it: `RBEE_QUEEN_URL` (default `http://127.0.0.1:7833`),
/// `RBEE_API_TOKEN`, `RBEE_HOME`.
public struct QueenConnection: Sendable {
    public static let defaultURL = "http://127.0.0.1:7833"

    public var url: String
    public var token: String?
    public var home: String

    public init(url: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        var url = url ?? environment["RBEE_QUEEN_URL"] ?? Self.defaultURL
        while url.hasSuffix("/") { url.removeLast() }
        self.url = url
        self.token = environment["RBEE_API_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        self.home = environment["RBEE_HOME"] ?? NSHomeDirectory() + "/.rbee"
    }

    var client: RbeeClient { RbeeClient(token: token, unreachableCode: .unavailable) }

    /// Whether a queen answers `/health` now.
    public func health(timeout: Duration = .seconds(2)) async -> QueenHealth? {
        try? await client.call(.GET, url + "/health", timeout: timeout, as: QueenHealth.self)
    }

    /// A queen on this machine can be started; one elsewhere cannot.
    var isLocal: Bool {
        let host = URL(string: url)?.host ?? ""
        return host == "127.0.0.1" || host == "localhost" || host == "::1"
    }

    var port: Int { URL(string: url)?.port ?? 7833 }

    /// Answers `call`, turning an unreachable queen into one clear sentence.
    func call<T: Decodable>(_ method: HTTPMethod, _ path: String, json: Data? = nil, as type: T.Type) async throws(RbeeError) -> T {
        do {
            return try await client.call(method, url + path, json: json, timeout: .seconds(30), as: type)
        } catch {
            throw explained(error)
        }
    }

    /// A text answer (a log).
    func text(_ path: String) async throws(RbeeError) -> String {
        do {
            return String(decoding: try await client.call(.GET, url + path, timeout: .seconds(30)), as: UTF8.self)
        } catch {
            throw explained(error)
        }
    }

    func call(_ method: HTTPMethod, _ path: String, json: Data? = nil) async throws(RbeeError) {
        do {
            _ = try await client.call(method, url + path, json: json, timeout: .seconds(60))
        } catch {
            throw explained(error)
        }
    }

    func explained(_ error: RbeeError) -> RbeeError {
        guard error.code == .unavailable, error.status == nil else { return error }
        return RbeeError(.unavailable, "no queen answers at \(url) (start one with `rbee queen start`, or set RBEE_QUEEN_URL)")
    }
}

/// `rbee queen start`: a `queen-rbee` that outlives this command (it ignores SIGHUP), its log in
/// `$RBEE_HOME/logs/queen.log`. Returns its pid once it answers.
enum DetachedQueen {
    static func start(_ connection: QueenConnection, modelDirectories: [String], status: StatusLine) async throws(RbeeError) -> Int32 {
        let binary: String
        do { binary = try ProgramDirectory.program("queen-rbee") } catch {
            throw RbeeError(.unavailable, "cannot start a queen: \(error.message)")
        }
        let logDirectory = connection.home + "/logs"
        try? FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
        let log = logDirectory + "/queen.log"
        var arguments = ["--port", "\(connection.port)", "--home", connection.home]
        for directory in Set(modelDirectories).sorted() { arguments += ["--model-dir", directory] }
        status.show("starting queen-rbee on \(connection.url)…")
        let began = ContinuousClock.now
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: log) else { throw RbeeError(.unavailable, "cannot write \(log)") }
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { throw RbeeError(.unavailable, "cannot start \(binary): \(error)") }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if !process.isRunning {
                status.clear()
                throw RbeeError(.unavailable, "queen-rbee exited while starting; see \(log)")
            }
            if await connection.health(timeout: .milliseconds(500)) != nil {
                status.done(String(format: "queen-rbee ready on %@ (%.1f s)", connection.url, (ContinuousClock.now - began).milliseconds / 1000))
                return process.processIdentifier
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        process.terminate()
        status.clear()
        throw RbeeError(.unavailable, "queen-rbee did not answer within 30 s; see \(log)")
    }
}
