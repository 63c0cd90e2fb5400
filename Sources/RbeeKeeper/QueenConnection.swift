import Foundation
import NIOHTTP1
import RbeeAPI
import RbeeHTTP

#if canImport(Glibc)
import Glibc
#endif

/// Where the queen is, and how to reach it: `RBEE_QUEEN_URL` (default `http://127.0.0.1:7833`),
/// `RBEE_API_TOKEN` or a token file (`--token-file`, `RBEE_API_TOKEN_FILE`), `RBEE_HOME`.
public struct QueenConnection: Sendable {
    public static let defaultURL = "http://127.0.0.1:7833"

    public var url: String
    public var token: String?
    /// Where the token came from, to name when the queen refuses it.
    public var tokenSource: String?
    /// The token file given, passed on to a queen this command starts.
    public var tokenFile: String?
    public var home: String

    public init(url: String? = nil, tokenFile: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) {
        var url = url ?? environment["RBEE_QUEEN_URL"] ?? Self.defaultURL
        while url.hasSuffix("/") { url.removeLast() }
        self.url = url
        self.home = environment["RBEE_HOME"] ?? NSHomeDirectory() + "/.rbee"
        self.tokenFile = tokenFile ?? environment["RBEE_API_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        if let token = environment["RBEE_API_TOKEN"], !token.isEmpty {
            self.token = token
            self.tokenSource = "RBEE_API_TOKEN"
        } else if let file = self.tokenFile, let token = try? APIToken.load(environment: [:], tokenFile: file) {
            self.token = token.value
            self.tokenSource = file
        }
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
            throw await explained(error)
        }
    }

    /// A text answer (a log).
    func text(_ path: String) async throws(RbeeError) -> String {
        do {
            return String(decoding: try await client.call(.GET, url + path, timeout: .seconds(30)), as: UTF8.self)
        } catch {
            throw await explained(error)
        }
    }

    func call(_ method: HTTPMethod, _ path: String, json: Data? = nil) async throws(RbeeError) {
        do {
            _ = try await client.call(method, url + path, json: json, timeout: .seconds(60))
        } catch {
            throw await explained(error)
        }
    }

    /// The server's error in words that say what to do: a missing or refused token, no queen, a
    /// queen of another version (both named), or something on the port that is not an rbee queen.
    func explained(_ error: RbeeError) async -> RbeeError {
        var explained = error
        switch error.code {
        case .missingAPIKey:
            explained.message = "the queen at \(url) needs an API token: set RBEE_API_TOKEN, or pass --token-file with the file the queen reads"
        case .invalidAPIKey:
            explained.message =
                "the queen at \(url) refused the API token from \(tokenSource ?? "this command"): set RBEE_API_TOKEN or --token-file to the token the queen was started with"
        case .unavailable where error.status == nil:
            explained.message = "no queen answers at \(url) (start one with `rbee queen start`, or set RBEE_QUEEN_URL)"
        default:
            // An answer from the queen's address that is no rbee error body (RbeeClient keeps it
            // in "answer"); a hive's such answer relayed by the queen names the hive's address.
            guard error.details["answer"] != nil, error.details["url"] == .string(RbeeClient.origin(url)), let status = error.status else {
                return error
            }
            switch await versions() {
            case .some(let theirs) where theirs.apiVersion != RbeeVersion.apiVersion:
                return mismatch(theirs)
            case .some:
                explained.message = "\(url) answered \(status), but not as an rbee \(RbeeVersion.version) queen does"
            case nil:
                explained.message = "\(url) answered \(status), but it is not an rbee queen: another program is on that port"
            }
        }
        return explained
    }

    /// What every rbee program's `/health` says of its version.
    struct Versions: Decodable {
        let version: String
        let apiVersion: Int
        enum CodingKeys: String, CodingKey {
            case version
            case apiVersion = "api_version"
        }
    }

    /// The versions the program at `url` reports, or nil when its `/health` is not rbee's.
    private func versions() async -> Versions? {
        guard let data = try? await client.call(.GET, url + "/health", timeout: .seconds(2)) else { return nil }
        return try? JSONDecoder().decode(Versions.self, from: data)
    }

    private func mismatch(_ theirs: Versions) -> RbeeError {
        RbeeError(
            .versionMismatch,
            "the queen at \(url) is rbee \(theirs.version) (API v\(theirs.apiVersion)); this rbee is \(RbeeVersion.version) (API v\(RbeeVersion.apiVersion)): use a matching rbee",
            details: [
                "queen_version": .string(theirs.version), "queen_api_version": .number(Double(theirs.apiVersion)),
                "rbee_version": .string(RbeeVersion.version), "rbee_api_version": .number(Double(RbeeVersion.apiVersion)),
            ])
    }

    /// What answers at `url`: a queen this CLI can talk to, nothing, or something else (another
    /// program, or a queen of another API version), named.
    enum Peer: Sendable {
        case queen(QueenHealth)
        case nothing
        case other(RbeeError)
    }

    func peer(timeout: Duration = .seconds(2)) async -> Peer {
        let data: Data
        do {
            data = try await client.call(.GET, url + "/health", timeout: timeout)
        } catch {
            return error.code == .unavailable && error.status == nil ? .nothing : .other(await explained(error))
        }
        if let versions = try? JSONDecoder().decode(Versions.self, from: data), versions.apiVersion != RbeeVersion.apiVersion {
            return .other(mismatch(versions))
        }
        guard let health = try? JSONDecoder().decode(QueenHealth.self, from: data) else {
            return .other(await explained(client.notRbee(url + "/health", body: data)))
        }
        return .queen(health)
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
        if let file = connection.tokenFile { arguments += ["--token-file", file] }
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
