import ArgumentParser
import Foundation
import RbeeAPI

/// `rbee queen`: the local queen daemon.
struct QueenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queen", abstract: "Start, stop or check the queen.", subcommands: [Start.self, Stop.self, Status.self])

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start queen-rbee in the background (it starts a local hive when work arrives).",
            discussion: "Logs go to $RBEE_HOME/logs/queen.log.\nExample:\n  rbee queen start")
        @OptionGroup var queen: QueenOptions
        @Option(name: .customLong("model-dir"), help: "Directory the local hive may import file: models from (repeatable).")
        var modelDirectories: [String] = []

        func run() async throws {
            let connection = queen.connection
            if let health = await connection.health() {
                FileHandle.standardError.write(Data("a queen is already running at \(connection.url) (pid \(health.pid))\n".utf8))
                return
            }
            guard connection.isLocal else { throw RbeeError(.unavailable, "only a queen on this machine can be started; \(connection.url) is not") }
            let defaultDirectory = URL(fileURLWithPath: String(Session.defaultModel.dropFirst(5))).deletingLastPathComponent().path
            let pid = try await DetachedQueen.start(connection, modelDirectories: modelDirectories + [defaultDirectory], status: StatusLine())
            FileHandle.standardOutput.write(Data("\(pid)\n".utf8))
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the queen (it stops the hive it started, which stops its workers).", discussion: "Example:\n  rbee queen stop")
        @OptionGroup var queen: QueenOptions

        func run() async throws {
            let connection = queen.connection
            guard await connection.health() != nil else {
                FileHandle.standardError.write(Data("no queen is running at \(connection.url)\n".utf8))
                return
            }
            try await connection.call(.POST, "/v1/shutdown")
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline, await connection.health(timeout: .milliseconds(500)) != nil {
                try await Task.sleep(for: .milliseconds(100))
            }
            FileHandle.standardError.write(Data("queen stopped\n".utf8))
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Whether a queen answers, with its version, hives, workers and queue (exit 1 if none).",
            discussion: "Example:\n  rbee queen status --json")
        @OptionGroup var queen: QueenOptions
        @OptionGroup var list: ListOptions

        func run() async throws {
            let connection = queen.connection
            guard let health = await connection.health() else {
                throw RbeeError(.unavailable, "no queen answers at \(connection.url)")
            }
            if list.json { return try printJSON(health) }
            let text = """
                queen-rbee \(health.version) (API \(health.apiVersion)) at \(connection.url), pid \(health.pid), up \(Int(health.uptimeS)) s
                hives: \(health.hivesOnline) online of \(health.hivesTotal); workers: \(health.workers); queued: \(health.queued)

                """
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}
