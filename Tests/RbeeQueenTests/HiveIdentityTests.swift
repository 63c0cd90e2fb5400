import AsyncHTTPClient
import Foundation
import NIOCore
import RbeeAPI
import RbeeTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One hive is one registry entry, whether it was added by hand or registered itself, and the
/// queen's model list follows what its hives hold without waiting for their next heartbeat.
@Suite(.serialized) struct HiveIdentityTests {
    struct ModelList: Decodable {
        struct Entry: Decodable { var id: String; var hives: [String] }
        var data: [Entry]
    }

    /// A hive process on `port` with the given home and extra arguments.
    func hive(home: String, port: Int, _ arguments: [String]) async throws -> Daemon {
        let hive = try Daemon(
            binary(named: "rbee-hive"),
            ["serve", "--port", "\(port)", "--home", home, "--worker-binary", binary(named: "llm-worker-rbee")] + arguments,
            url: "http://127.0.0.1:\(port)", log: home + "/hive-\(UUID().uuidString.prefix(4)).log")
        try await hive.waitHealthy()
        return hive
    }

    @Test func aHiveAddedByHandAndByItsOwnHeartbeatIsOneEntryAndItsModelsAreListedAtOnce() async throws {
        // Heartbeats every 10 s: anything seen sooner was not brought by one.
        let cluster = try await Cluster.start(hives: [], heartbeatSecs: 10)
        let home = try temporaryHome()
        let port = freePort()
        let url = "http://127.0.0.1:\(port)"
        // Two more names for the real model, in a directory the hive may import from.
        let directory = try temporaryHome()
        for name in ["pulled", "spawned"] { try FileManager.default.linkItem(atPath: modelPath, toPath: directory + "/\(name).gguf") }
        var running: Daemon?
        do {
            // Added by hand as h1; the queen learns the hive's id from its health.
            let first = try await hive(home: home, port: port, ["--name", "box", "--model-dir", directory])
            running = first
            struct Health: Decodable { var hive_id: String }
            let id = try await get(url + "/health", as: Health.self).hive_id
            #expect(id.hasPrefix("hive-"))
            let (added, addedBody) = try await post(cluster.queen.url + "/v1/hives", json: #"{"name":"h1","url":"\#(url)"}"#)
            #expect(added.status == .created, "\(String(decoding: addedBody, as: UTF8.self))")
            #expect(try decode(HiveRecord.self, addedBody).hiveID == id)
            await first.stop()

            // The same hive (its home keeps its id) now heartbeats under its host name: the entry is renamed.
            let second = try await hive(home: home, port: port, ["--name", "box", "--model-dir", directory, "--queen-url", cluster.queen.url, "--heartbeat-secs", "10"])
            running = second
            try await waitUntil(.seconds(10)) { try await cluster.hiveList().contains { $0.name == "box" } }
            let hives = try await cluster.hiveList()
            #expect(hives.map(\.name) == ["box"], "\(hives)")
            #expect(hives.first?.hiveID == id && hives.first?.url == url && hives.first?.status == .online)
            #expect(cluster.queen.tail().contains("hive renamed"), "\(cluster.queen.tail())")

            // Registered again by hand under another name: 409 naming the entry it already has.
            let (again, againBody) = try await post(cluster.queen.url + "/v1/hives", json: #"{"name":"h2","url":"\#(url)"}"#)
            #expect(again.status == .conflict)
            let conflict = try decode(ErrorEnvelope.self, againBody).error
            #expect(conflict.code == .hiveExists && conflict.details["name"] == "box", "\(conflict)")
            // Another hive (another id) claiming the URL: 409 naming the entry too.
            let beat = HiveHeartbeat(name: "intruder", url: url, cpuCores: 2, ramAvailableBytes: 1 << 30, models: [], workers: [], hiveID: "hive-someone-else")
            let (intruder, intruderBody) = try await post(
                cluster.queen.url + "/v1/hives/heartbeat", json: String(decoding: try JSONEncoder().encode(beat), as: UTF8.self))
            #expect(intruder.status == .conflict)
            #expect(try decode(ErrorEnvelope.self, intruderBody).error.details["name"] == "box")
            #expect(try await cluster.hiveList().map(\.name) == ["box"])

            // rbee hive list shows it once.
            let cliHome = try temporaryHome()
            let cli = try Daemon(PathLaunch("rbee", ["hive", "list"], environment: ["RBEE_QUEEN_URL": cluster.queen.url]), url: "", log: cliHome + "/cli.log")
            try await waitUntil(.seconds(20)) { !cli.process.isRunning }
            let listing = cli.tail()
            #expect(cli.process.terminationStatus == 0 && listing.components(separatedBy: url).count == 2, "\(listing)")

            // A pull through the queen: listed under its hive as soon as the pull's stream ends.
            let (pulled, pullBody) = try await post(cluster.queen.url + "/v1/models/pull", json: #"{"model":"file:\#(directory)/pulled.gguf","hive":"box"}"#)
            #expect(pulled.status == .ok && String(decoding: pullBody, as: UTF8.self).contains("\"complete\""), "\(String(decoding: pullBody, as: UTF8.self))")
            let afterPull = try await get(cluster.queen.url + "/v1/models", as: ModelList.self).data
            #expect(afterPull.first { $0.id == "pulled" }?.hives == ["box"], "\(afterPull.map { ($0.id, $0.hives) })")

            // A spawn through the queen: listed under the hive the spawn went to by the time its task ends.
            let task = try await runTask(cluster.queen.url, json: taskJSON("file:\(directory)/spawned.gguf", maxTokens: 2))
            #expect(task.endsProperly)
            let afterSpawn = try await get(cluster.queen.url + "/v1/models", as: ModelList.self).data
            #expect(afterSpawn.first { $0.id == "spawned" }?.hives == ["box"], "\(afterSpawn.map { ($0.id, $0.hives) })")
        } catch {
            Issue.record("\(error)\nqueen: \(cluster.queen.tail())\nhive: \(running?.tail() ?? "")")
        }
        await running?.stop()
        await cluster.stop()
    }
}
