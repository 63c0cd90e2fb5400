import Foundation
import Logging
import RbeeAPI

/// Who a hive is, whatever it is called and wherever it listens: an id created on its first
/// start and kept in `$RBEE_HOME/hive/id`. It goes with the hive's health, its registration and
/// every heartbeat, so a queen keeps one entry per hive.
enum HiveIdentity {
    /// The id kept in `home`, created there when there is none (or it is unreadable).
    static func load(home: String, logger: Logger) throws -> String {
        let directory = home + "/hive"
        let path = directory + "/id"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let data = FileManager.default.contents(atPath: path) {
            let id = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if Validation.isValidID(id) { return id }
            let aside = path + ".corrupt-\(Int(Date().timeIntervalSince1970))"
            logger.error("hive id unreadable: moving it aside and taking a new one", metadata: ["path": "\(path)", "aside": "\(aside)"])
            try FileManager.default.moveItem(atPath: path, toPath: aside)
        }
        let id = "hive-" + UUID().uuidString.lowercased()
        // Written beside, then linked into place: never a half-written id, and of two hives
        // starting on one home at once, both keep the one that got there first.
        let temporary = path + ".\(getpid()).tmp"
        try Data((id + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        do {
            try FileManager.default.linkItem(atPath: temporary, toPath: path)
        } catch {
            guard let data = FileManager.default.contents(atPath: path) else { throw error }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        logger.info("hive identity created", metadata: ["hive_id": "\(id)", "path": "\(path)"])
        return id
    }
}
