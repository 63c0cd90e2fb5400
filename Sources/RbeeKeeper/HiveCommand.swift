import ArgumentParser
import Foundation
import RbeeAPI

/// `rbee hive`: the machines of the cluster.
struct HiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hive", abstract: "Add, list and remove hives (one per machine).", subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a running hive; the queen checks that it answers first.",
            discussion: "Example:\n  rbee hive add gpu-box --url http://192.168.1.20:7835")
        @OptionGroup var queen: QueenOptions
        @Argument(help: "A DNS-safe name.") var name: String
        @Option(help: "The hive's base URL.") var url: String

        func run() async throws {
            let record = try await queen.connection.call(
                .POST, "/v1/hives", json: try JSONEncoder().encode(AddHiveRequest(name: name, url: url)), as: HiveRecord.self)
            FileHandle.standardError.write(Data("added hive \(record.name) at \(record.url)\n".utf8))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list", abstract: "Every hive: status, last seen, devices, models, workers.", discussion: "Example:\n  rbee hive list --json")
        @OptionGroup var queen: QueenOptions
        @OptionGroup var list: ListOptions

        func run() async throws {
            struct Answer: Decodable { var hives: [HiveRecord] }
            let hives = try await queen.connection.call(.GET, "/v1/hives", as: Answer.self).hives
            if list.json { return try printJSON(hives) }
            var table = Table(header: ["NAME", "URL", "STATUS", "LAST SEEN", "DEVICES", "MODELS", "WORKERS"])
            for hive in hives {
                let devices = [hive.cpuCores.map { "\($0) CPU cores" }, hive.ramAvailableBytes.map { "\(Table.size($0)) RAM free" }]
                    .compactMap { $0 }.joined(separator: ", ")
                table.rows.append([
                    hive.name, hive.url, hive.status.rawValue, Table.ago(hive.lastSeen), devices.isEmpty ? "-" : devices, "\(hive.models.count)",
                    "\(hive.workers)",
                ])
            }
            table.print()
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Forget a hive (it keeps running).", discussion: "Example:\n  rbee hive rm gpu-box")
        @OptionGroup var queen: QueenOptions
        @Argument(help: "The hive's name.") var name: String

        func run() async throws {
            try await queen.connection.call(.DELETE, "/v1/hives/\(name)")
            FileHandle.standardError.write(Data("removed hive \(name)\n".utf8))
        }
    }
}

/// `rbee ps`: every worker in the cluster.
struct PsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps", abstract: "Every worker in the cluster: model, hive, state, slots, queue, tokens/s.",
        discussion: "Example:\n  rbee ps --json")
    @OptionGroup var queen: QueenOptions
    @OptionGroup var list: ListOptions

    func run() async throws {
        struct Answer: Decodable { var workers: [ClusterWorker] }
        let workers = try await queen.connection.call(.GET, "/v1/workers", as: Answer.self).workers
        if list.json { return try printJSON(workers) }
        var table = Table(header: ["WORKER", "MODEL", "HIVE", "DEVICE", "STATE", "SLOTS", "QUEUE", "TOK/S", "PID"])
        for worker in workers {
            table.rows.append([
                worker.workerID, worker.model, worker.hive, worker.device ?? "-", worker.state.rawValue, "\(worker.slotsBusy)/\(worker.slotsTotal)",
                "\(worker.queueDepth)", worker.tokensPerSec.map { String(format: "%.1f", $0) } ?? "-", worker.pid.map(String.init) ?? "-",
            ])
        }
        table.print()
    }
}

/// `rbee logs WORKER`: the end of a worker's log, wherever in the cluster it runs (or ran).
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Print the end of a worker's log (see rbee ps for worker ids).",
        discussion: "Example:\n  rbee logs worker-1a2b3c4d --tail 20000")
    @OptionGroup var queen: QueenOptions
    @Option(help: "Bytes from the end of the log.") var tail: Int = 65536
    @Argument(help: "The worker's id.") var worker: String

    func validate() throws {
        if !Validation.isValidID(worker) { throw ValidationError("a worker id is [A-Za-z0-9._-]{1,64}") }
        if !(0...(16 << 20)).contains(tail) { throw ValidationError("--tail must be 0…16777216") }
    }

    func run() async throws {
        let text = try await queen.connection.text("/v1/workers/\(worker)/logs?tail=\(tail)")
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
