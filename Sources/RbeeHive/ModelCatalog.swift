import Foundation
import Crypto
import GRDB
import Logging
import RbeeAPI
import RbeeGGUF
import Synchronization

/// The hive's model catalog: one SQLite database (GRDB, WAL) under `$RBEE_HOME/hive`, describing
/// the GGUF files in `$RBEE_HOME/models` and imported `file:` models.
///
/// A database that cannot be opened or is corrupt is moved aside and rebuilt by rescanning the
/// model directory, so a bad catalog never keeps the hive from starting.
public final class ModelCatalog: Sendable {
    public let modelDirectory: String
    private let database: DatabasePool
    private let logger: Logger
    private let changes: Mutex<Int>

    /// Grows with every change of the catalog. It starts from the clock (milliseconds × 1000), so
    /// it also grows across restarts: a queen holding a newer catalog never takes an older one.
    /// Read it before listing: the list is then at least as new as the version.
    public var version: Int { changes.withLock { $0 } }

    public init(home: String, logger: Logger) async throws {
        self.logger = logger
        self.modelDirectory = home + "/models"
        changes = Mutex(Int(Date().timeIntervalSince1970 * 1000) * 1000)
        let hiveDirectory = home + "/hive"
        try FileManager.default.createDirectory(atPath: hiveDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: modelDirectory, withIntermediateDirectories: true)
        let path = hiveDirectory + "/catalog.sqlite"
        do {
            database = try Self.open(path: path)
        } catch {
            let aside = path + ".corrupt-\(Int(Date().timeIntervalSince1970))"
            logger.error("catalog unreadable: moving it aside and rescanning", metadata: ["path": "\(path)", "aside": "\(aside)", "error": "\(error)"])
            for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
            }
            database = try Self.open(path: path)
            try await rescan()
        }
    }

    private static func open(path: String) throws -> DatabasePool {
        let pool = try DatabasePool(path: path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: models") { db in
            try db.create(table: "model") { table in
                table.primaryKey("id", .text)
                table.column("sourceRef", .text).notNull().indexed()
                table.column("localPath", .text).notNull()
                table.column("sizeBytes", .integer).notNull()
                table.column("sha256", .text).notNull()
                table.column("architecture", .text)
                table.column("layerCount", .integer)
                table.column("contextLength", .integer)
                table.column("quantization", .text)
                table.column("parameterCount", .integer)
                table.column("createdAt", .double).notNull()
            }
        }
        migrator.registerMigration("v2: chat templates") { db in
            try db.create(table: "chatTemplate") { table in
                table.primaryKey("modelID", .text)
                table.column("template", .text).notNull()
                table.column("sha256", .text).notNull()
                table.column("updatedAt", .double).notNull()
            }
        }
        try migrator.migrate(pool)
        // A corrupt file can open fine and fail on first read: read once now.
        _ = try pool.read { db in try ModelRow.fetchCount(db) }
        return pool
    }

    /// Rebuilds rows for the GGUF files of the model directory.
    private func rescan() async throws {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: modelDirectory)) ?? []
        for file in files where file.hasSuffix(".gguf") {
            let path = modelDirectory + "/" + file
            do {
                let info = try Self.describe(path: path, id: String(file.dropLast(5)), sourceRef: "file:" + path)
                try await add(info)
                logger.info("catalog: rescanned model", metadata: ["id": "\(info.id)"])
            } catch {
                logger.warning("catalog: skipped unreadable file", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
    }

    /// Facts of a GGUF file from its header and size alone: nothing reads the rest of the file,
    /// so a file of any size is described at once. `sha256` is "" until computed.
    static func describe(path: String, id: String, sourceRef: String, sha256: String? = nil) throws -> ModelInfo {
        let file = try GGUFFile(path: path)
        return ModelInfo(
            id: id, sourceRef: sourceRef, localPath: path, sizeBytes: file.fileSize, sha256: sha256 ?? "", architecture: file.architecture,
            layerCount: file.blockCount, contextLength: file.contextLength, quantization: file.quantization,
            parameterCount: file.parameterCount, createdAt: Date().timeIntervalSince1970)
    }

    public func add(_ info: ModelInfo) async throws {
        try await database.write { db in try ModelRow(info).save(db) }
        changed()
    }

    private func changed() { changes.withLock { $0 += 1 } }

    /// Records a sha256 computed after the model was catalogued.
    func setSHA256(id: String, _ sha256: String) async throws {
        try await database.write { db in
            guard var row = try ModelRow.fetchOne(db, key: id) else { return }
            row.sha256 = sha256
            try row.update(db)
        }
        changed()
    }

    public func model(id: String) async throws -> ModelInfo? {
        try await database.read { db in
            guard var info = try ModelRow.fetchOne(db, key: id)?.info else { return nil }
            info.chatTemplateSHA256 = try String.fetchOne(db, sql: "SELECT sha256 FROM chatTemplate WHERE modelID = ?", arguments: [id])
            return info
        }
    }

    /// The chat template set for a model, if any: its text and sha256.
    public func chatTemplate(id: String) async throws -> (text: String, sha256: String)? {
        try await database.read { db in
            try Row.fetchOne(db, sql: "SELECT template, sha256 FROM chatTemplate WHERE modelID = ?", arguments: [id]).map {
                (text: $0["template"], sha256: $0["sha256"])
            }
        }
    }

    /// The file a worker reads the model's chat template from (`--chat-template-file`), written
    /// when first asked for: named by the template's sha256, so a changed template is another file
    /// (and a worker with the old one is not reused for it). Nil when none is set.
    public func chatTemplateFile(id: String) async throws -> String? {
        guard let template = try await chatTemplate(id: id) else { return nil }
        let directory = (modelDirectory as NSString).deletingLastPathComponent + "/hive/templates"
        let path = directory + "/\(id)-\(template.sha256.prefix(16)).jinja"
        if !FileManager.default.fileExists(atPath: path) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            // Written under a name of its own, then renamed: the final name only ever holds a whole file.
            let partial = path + ".partial-" + UUID().uuidString
            try Data(template.text.utf8).write(to: URL(fileURLWithPath: partial))
            do {
                try FileManager.default.moveItem(atPath: partial, toPath: path)
            } catch {
                try? FileManager.default.removeItem(atPath: partial)
                // Another spawn wrote the same file (same sha256) first.
                guard FileManager.default.fileExists(atPath: path) else { throw error }
            }
        }
        return path
    }

    /// Sets (or with nil clears) the chat template of a catalogued model; nil when there is no such model.
    public func setChatTemplate(id: String, _ template: String?) async throws -> ModelInfo? {
        let sha256 = template.map { FileHasher.hex(SHA256.hash(data: Data($0.utf8))) }
        let found = try await database.write { db -> Bool in
            guard try ModelRow.fetchOne(db, key: id) != nil else { return false }
            if let template, let sha256 {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO chatTemplate (modelID, template, sha256, updatedAt) VALUES (?, ?, ?, ?)",
                    arguments: [id, template, sha256, Date().timeIntervalSince1970])
            } else {
                try db.execute(sql: "DELETE FROM chatTemplate WHERE modelID = ?", arguments: [id])
            }
            return true
        }
        guard found else { return nil }
        changed()
        return try await model(id: id)
    }

    public func model(sourceRef: String) async throws -> ModelInfo? {
        try await database.read { db in
            try ModelRow.filter(Column("sourceRef") == sourceRef).fetchOne(db)?.info
        }
    }

    /// Newest first.
    public func list() async throws -> [ModelInfo] {
        try await database.read { db in
            let templates = try Dictionary(
                Row.fetchAll(db, sql: "SELECT modelID, sha256 FROM chatTemplate").map { (row: Row) -> (String, String) in (row["modelID"], row["sha256"]) },
                uniquingKeysWith: { first, _ in first })
            return try ModelRow.order(Column("createdAt").desc).fetchAll(db).map { row in
                var info = row.info
                info.chatTemplateSHA256 = templates[info.id]
                return info
            }
        }
    }

    /// Removes the row, and the file when it lives in the model directory (imported files stay).
    @discardableResult
    public func remove(id: String) async throws -> ModelInfo? {
        guard let info = try await model(id: id) else { return nil }
        if info.localPath.hasPrefix(modelDirectory + "/") {
            try? FileManager.default.removeItem(atPath: info.localPath)
        }
        _ = try await database.write { db in
            try db.execute(sql: "DELETE FROM chatTemplate WHERE modelID = ?", arguments: [id])
            return try ModelRow.deleteOne(db, key: id)
        }
        changed()
        return info
    }
}

/// The catalog's row; `ModelInfo` is the wire form.
struct ModelRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "model"
    var id: String
    var sourceRef: String
    var localPath: String
    var sizeBytes: Int
    var sha256: String
    var architecture: String?
    var layerCount: Int?
    var contextLength: Int?
    var quantization: String?
    var parameterCount: Int?
    var createdAt: Double

    init(_ info: ModelInfo) {
        id = info.id
        sourceRef = info.sourceRef
        localPath = info.localPath
        sizeBytes = info.sizeBytes
        sha256 = info.sha256
        architecture = info.architecture
        layerCount = info.layerCount
        contextLength = info.contextLength
        quantization = info.quantization
        parameterCount = info.parameterCount
        createdAt = info.createdAt
    }

    var info: ModelInfo {
        ModelInfo(
            id: id, sourceRef: sourceRef, localPath: localPath, sizeBytes: sizeBytes, sha256: sha256, architecture: architecture,
            layerCount: layerCount, contextLength: contextLength, quantization: quantization, parameterCount: parameterCount,
            createdAt: createdAt)
    }
}
