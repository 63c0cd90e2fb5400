import ArgumentParser
import Foundation
import RbeeAPI
import RbeeHTTP

#if canImport(Glibc)
import Glibc
#endif

/// `rbee`: what people type. A thin client of the queen that starts a local one when needed.
public struct RbeeCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rbee",
        abstract: "Run LLMs on every machine of your network as one service.",
        discussion: """
            Talks to the queen at RBEE_QUEEN_URL (default http://127.0.0.1:7833) with RBEE_API_TOKEN;
            infer, chat and models pull start a local queen (and hive) when none answers, and stop them
            afterwards. State lives in RBEE_HOME (default ~/.rbee).
            Examples:
              rbee infer "Why is the sky blue?"
              rbee infer -m hf:unsloth/gemma-3-270m-it-GGUF:gemma-3-270m-it-Q4_K_M.gguf --max-tokens 64 "Hello"
              rbee chat
              rbee ps
            """,
        subcommands: [
            InferCommand.self, ChatCommand.self, ModelsCommand.self, HiveCommand.self, PsCommand.self, LogsCommand.self, QueenCommand.self,
        ])

    public init() {}

    /// Parses and runs; errors from servers are one line and exit 1, usage errors exit 2.
    public static func run() async -> Never {
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
            Foundation.exit(0)
        } catch let error as RbeeError {
            fail(error.message)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("rbee: error: \(message.replacingOccurrences(of: "\n", with: " "))\n".utf8))
        Foundation.exit(1)
    }
}

/// Where the queen is; every command takes it.
struct QueenOptions: ParsableArguments {
    @Option(name: .customLong("queen-url"), help: "The queen [RBEE_QUEEN_URL, http://127.0.0.1:7833].") var queenURL: String?
    @Option(
        name: .customLong("token-file"),
        help: "A file holding the queen's API token, mode 0600 [RBEE_API_TOKEN_FILE]; RBEE_API_TOKEN wins when both are set.")
    var tokenFile: String?

    var connection: QueenConnection { QueenConnection(url: queenURL, tokenFile: tokenFile) }

    /// A token file that cannot be used is a usage error, before anything is sent.
    func validate() throws {
        guard let file = tokenFile ?? ProcessInfo.processInfo.environment["RBEE_API_TOKEN_FILE"] else { return }
        do {
            _ = try APIToken.load(environment: [:], tokenFile: file)
        } catch {
            throw ValidationError(error.message)
        }
    }
}

/// Output format of list commands.
struct ListOptions: ParsableArguments {
    @Flag(help: "JSON instead of a table, for scripts.") var json = false
}
