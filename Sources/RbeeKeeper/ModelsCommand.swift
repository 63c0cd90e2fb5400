import ArgumentParser
import Foundation
import RbeeAPI
import RbeeHTTP

/// `rbee models`: the models of every hive.
struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "Pull, list and remove models across the cluster.",
        subcommands: [Pull.self, List.self, Remove.self, Template.self, Alias.self, Unalias.self])

    /// A model as the queen's `GET /v1/models` lists it.
    struct Entry: Codable, Sendable {
        var id: String
        var sizeBytes: Int?
        var quantization: String?
        var hives: [String]
        var loaded: Bool
        var chatTemplateSHA256: String?

        enum CodingKeys: String, CodingKey {
            case id, quantization, hives, loaded
            case sizeBytes = "size_bytes"
            case chatTemplateSHA256 = "chat_template_sha256"
        }
    }

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Download a model onto a hive, with a progress bar.",
            discussion: """
                Examples:
                  rbee models pull hf:unsloth/gemma-3-270m-it-GGUF:gemma-3-270m-it-Q4_K_M.gguf
                  rbee models pull --hive gpu-box https://example.com/model.gguf
                """)
        @OptionGroup var queen: QueenOptions
        @Option(help: "The hive to download onto (default: the best one).") var hive: String?
        @Argument(help: "Model reference: hf:ORG/REPO[@REV]:FILE.gguf, https://…, file:/….") var model: String

        func run() async throws {
            let status = StatusLine()
            let line = try await Session.run(queen.connection, autoStart: true, model: model, status: status) { session in
                try await pull(session.connection, status: status)
            }
            status.write(line + "\n")
        }

        func pull(_ connection: QueenConnection, status: StatusLine) async throws(RbeeError) -> String {
            let body = try? JSONEncoder().encode(PullRequest(model: model, hive: hive))
            let reader: EventStreamReader
            do {
                reader = try await connection.client.stream(.POST, connection.url + "/v1/models/pull", json: body, timeout: .seconds(60))
            } catch {
                throw await connection.explained(error)
            }
            do {
                for try await message in reader.events(of: PullEvent.self) {
                    guard case .event(let event) = message else { continue }
                    switch event.progress {
                    case .downloading(let bytes, let total, let speed, let eta, let attempt):
                        status.show(
                            StatusLine.download(
                                "pulling", model: event.model, hive: event.hive, bytes: bytes, total: total, speedMBps: speed, etaS: eta,
                                attempt: attempt))
                    case .complete(_, _, let size):
                        status.clear()
                        return "\(event.model) is on \(event.hive)" + (size > 0 ? " (\(StatusLine.megabytes(size)))" : " (already there)")
                    case .failed(let error):
                        status.clear()
                        throw error
                    }
                }
            } catch let error as RbeeError {
                throw error
            } catch {
                status.clear()
                throw RbeeError(.unavailable, "the connection to the queen broke: \(error)")
            }
            throw RbeeError(.downloadFailed, "the pull ended without a result")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Every model of every hive: id, size, quantization, hives, loaded.",
            discussion: "Example:\n  rbee models list --json")
        @OptionGroup var queen: QueenOptions
        @OptionGroup var list: ListOptions

        func run() async throws {
            struct Answer: Decodable { var data: [Entry] }
            let models = try await queen.connection.call(.GET, "/v1/models", as: Answer.self).data
            if list.json { return try printJSON(models) }
            var table = Table(header: ["ID", "SIZE", "QUANT", "HIVES", "LOADED"])
            for model in models {
                table.rows.append([model.id, Table.size(model.sizeBytes), model.quantization ?? "-", model.hives.joined(separator: ","), model.loaded ? "yes" : "no"])
            }
            table.print()
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove a model from every hive that has it (or one hive).",
            discussion: "Example:\n  rbee models rm gemma-3-270m-q4_k_m --hive gpu-box")
        @OptionGroup var queen: QueenOptions
        @Option(help: "Only from this hive.") var hive: String?
        @Argument(help: "The model's catalog id (see rbee models list).") var id: String

        func validate() throws {
            if !Validation.isValidID(id) { throw ValidationError("a model id is [A-Za-z0-9._-]{1,64}") }
            if let hive, !Validation.isValidID(hive) { throw ValidationError("--hive must be a hive name") }
        }

        func run() async throws {
            try await queen.connection.call(.DELETE, "/v1/models/\(id)" + (hive.map { "?hive=\($0)" } ?? ""))
            FileHandle.standardError.write(Data("removed \(id)\n".utf8))
        }
    }

    struct Alias: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let NAME stand for MODEL in requests (kept in the queen's registry).",
            discussion: """
                A client hard-wired to a model name (gpt-4o-mini, llama3) then gets MODEL; answers
                name the model as the client did, and GET /v1/models lists the alias.
                Example:
                  rbee models alias gpt-4o-mini SmolLM2-135M-Instruct.Q4_1
                """)
        @OptionGroup var queen: QueenOptions
        @Argument(help: "The alias.") var name: String
        @Argument(help: "The catalog id or reference it stands for.") var model: String

        func validate() throws {
            if !Validation.isValidID(name) { throw ValidationError("an alias is [A-Za-z0-9._-]{1,64}") }
        }

        func run() async throws {
            let body = try JSONEncoder().encode(["model": model])
            try await queen.connection.call(.PUT, "/v1/aliases/\(name)", json: body)
            FileHandle.standardError.write(Data("\(name) now stands for \(model)\n".utf8))
        }
    }

    struct Unalias: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a model alias.", discussion: "Example:\n  rbee models unalias gpt-4o-mini")
        @OptionGroup var queen: QueenOptions
        @Argument(help: "The alias.") var name: String

        func validate() throws {
            if !Validation.isValidID(name) { throw ValidationError("an alias is [A-Za-z0-9._-]{1,64}") }
        }

        func run() async throws {
            try await queen.connection.call(.DELETE, "/v1/aliases/\(name)")
            FileHandle.standardError.write(Data("removed alias \(name)\n".utf8))
        }
    }

    struct Template: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set the chat template a model's workers use instead of the one in its GGUF (or --clear it).",
            discussion: """
                The template text goes into the catalog of every hive that has the model (or --hive), and
                every later worker of it renders chat requests with it; the model's running workers are
                restarted (requests in flight finish first). A template that does not parse fails the
                next worker's load with MODEL_LOAD_FAILED.
                Examples:
                  rbee models template SmolLM2-135M-Instruct.Q4_1 qwen3.jinja
                  rbee models template SmolLM2-135M-Instruct.Q4_1 --clear
                """)
        @OptionGroup var queen: QueenOptions
        @Option(help: "Only on this hive.") var hive: String?
        @Flag(help: "Go back to the GGUF's own template.") var clear = false
        @Argument(help: "The model's catalog id (see rbee models list).") var id: String
        @Argument(help: "A Jinja chat template file.") var file: String?

        struct Change: Decodable {
            var hives: [String]
            var chatTemplateSHA256: String?
            var workersRestarted: [String]

            enum CodingKeys: String, CodingKey {
                case hives
                case chatTemplateSHA256 = "chat_template_sha256"
                case workersRestarted = "workers_restarted"
            }
        }

        func validate() throws {
            if !Validation.isValidID(id) { throw ValidationError("a model id is [A-Za-z0-9._-]{1,64}") }
            if let hive, !Validation.isValidID(hive) { throw ValidationError("--hive must be a hive name") }
            if clear == (file != nil) { throw ValidationError("give a template file, or --clear") }
        }

        func run() async throws {
            let path = "/v1/models/\(id)/template" + (hive.map { "?hive=\($0)" } ?? "")
            let change: Change
            if let file {
                let text: String
                do { text = try String(contentsOfFile: (file as NSString).expandingTildeInPath, encoding: .utf8) } catch {
                    throw ValidationError("cannot read \(file): \(error.localizedDescription)")
                }
                let body = try JSONEncoder().encode(ChatTemplateUpdate(template: text))
                change = try await queen.connection.call(.PUT, path, json: body, as: Change.self)
            } else {
                change = try await queen.connection.call(.DELETE, path, as: Change.self)
            }
            let what = change.chatTemplateSHA256.map { "template \($0.prefix(12)) set" } ?? "template cleared"
            let restarted = change.workersRestarted.isEmpty ? "" : "; restarted \(change.workersRestarted.joined(separator: ", "))"
            FileHandle.standardError.write(Data("\(id): \(what) on \(change.hives.joined(separator: ", "))\(restarted)\n".utf8))
        }
    }
}
