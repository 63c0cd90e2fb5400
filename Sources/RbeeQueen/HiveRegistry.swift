import Foundation
import GRDB
import Logging
import RbeeAPI
import Synchronization

/// The hives the queen knows: persisted in SQLite (GRDB) under `$RBEE_HOME/queen`, so a restarted
/// queen keeps them, and mirrored in memory with what their heartbeats last said.
///
/// A hive silent for 3 heartbeat intervals is `unreachable` and gets no new work; its next
/// heartbeat (or successful probe) makes it `online` again.
public final class HiveRegistry: Sendable {
    /// What the queen knows of one hive now.
    struct Entry: Sendable {
        var record: HiveRecord
        var lastHeard: ContinuousClock.Instant
        var workers: [HiveWorkerInfo] = []
        var catalog: [ModelInfo] = []
        /// What the database holds for this hive.
        var saved: HiveRecord?
    }

    private let database: DatabasePool
    private let entries = Mutex<[String: Entry]>([:])
    /// Names being added by `POST /v1/hives` while their hive is asked for its health.
    private let pendingNames = Mutex<Set<String>>([])
    private let aliasCache = Mutex<[String: String]>([:])
    private let unreachableAfter: Duration
    private let logger: Logger

    init(home: String, unreachableAfter: Duration, logger: Logger) throws {
        self.unreachableAfter = unreachableAfter
        self.logger = logger
        let directory = home + "/queen"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/registry.sqlite"
        do {
            database = try Self.open(path: path)
        } catch {
            // The registry is only a list of hives: a corrupt file is kept for inspection and
            // hives register again with their next heartbeat.
            let aside = path + ".corrupt-\(Int(Date().timeIntervalSince1970))"
            logger.error("hive registry unreadable: moving it aside", metadata: ["path": "\(path)", "aside": "\(aside)", "error": "\(error)"])
            for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
            }
            database = try Self.open(path: path)
        }
        let rows = try database.read { db in try HiveRow.fetchAll(db) }
        let aliasRows = try database.read { db in try AliasRow.fetchAll(db) }
        aliasCache.withLock { cache in for row in aliasRows { cache[row.name] = row.model } }
        let now = ContinuousClock.now
        entries.withLock { entries in
            for row in rows {
                // Known hives get one full grace period to be heard from after a restart.
                entries[row.name] = Entry(record: row.record, lastHeard: now, saved: row.record)
            }
        }
    }

    private static func open(path: String) throws -> DatabasePool {
        let pool = try DatabasePool(path: path)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: hives") { db in
            try db.create(table: "hive") { table in
                table.primaryKey("name", .text)
                table.column("url", .text).notNull()
                table.column("source", .text).notNull()
                table.column("lastSeen", .double)
                table.column("cpuCores", .integer)
                table.column("ramAvailableBytes", .integer)
                table.column("models", .text).notNull()
                table.column("addedAt", .double).notNull()
            }
        }
        migrator.registerMigration("v2: hive versions") { db in
            try db.alter(table: "hive") { table in
                table.add(column: "version", .text)
                table.add(column: "apiVersion", .integer)
            }
        }
        migrator.registerMigration("v3: hive identity") { db in
            try db.alter(table: "hive") { table in
                table.add(column: "hiveID", .text)
                table.add(column: "catalogVersion", .integer)
            }
        }
        migrator.registerMigration("v4: model aliases") { db in
            try db.create(table: "alias") { table in
                table.primaryKey("name", .text)
                table.column("model", .text).notNull()
            }
        }
        try migrator.migrate(pool)
        _ = try pool.read { db in try HiveRow.fetchCount(db) }
        return pool
    }

    // MARK: Model aliases

    /// Names that stand for a model (`rbee models alias`), so a client hard-wired to a name works.
    func aliases() -> [String: String] { aliasCache.withLock { $0 } }

    /// Sets `name` to stand for `model` (replacing what it stood for).
    func setAlias(_ name: String, to model: String) async throws(RbeeError) {
        do {
            try await database.write { db in try AliasRow(name: name, model: model).save(db) }
        } catch {
            throw RbeeError(.unavailable, "the hive registry is unavailable: \(error)", retryAfter: 5)
        }
        aliasCache.withLock { $0[name] = model }
    }

    /// Removes an alias; false when there was none of that name.
    func removeAlias(_ name: String) async throws(RbeeError) -> Bool {
        let removed: Bool
        do {
            removed = try await database.write { db in try AliasRow.deleteOne(db, key: name) }
        } catch {
            throw RbeeError(.unavailable, "the hive registry is unavailable: \(error)", retryAfter: 5)
        }
        aliasCache.withLock { _ = $0.removeValue(forKey: name) }
        return removed
    }

    // MARK: Reading

    func list() -> [HiveRecord] {
        let now = ContinuousClock.now
        return entries.withLock { entries in
            entries.values.map { entry in
                var record = entry.record
                record.status = now - entry.lastHeard <= unreachableAfter ? .online : .unreachable
                record.workers = entry.workers.filter { [.starting, .loading, .ready].contains($0.state) }.count
                return record
            }.sorted { $0.name < $1.name }
        }
    }

    func entry(_ name: String) -> Entry? { entries.withLock { $0[name] } }

    func allEntries() -> [Entry] { entries.withLock { Array($0.values) } }

    /// Hives that get new work.
    func online() -> [Entry] {
        let now = ContinuousClock.now
        return entries.withLock { entries in entries.values.filter { now - $0.lastHeard <= unreachableAfter } }
            .sorted { $0.record.name < $1.record.name }
    }

    func isOnline(_ name: String) -> Bool {
        let now = ContinuousClock.now
        return entries.withLock { entries in entries[name].map { now - $0.lastHeard <= unreachableAfter } ?? false }
    }

    var isEmpty: Bool { entries.withLock { $0.isEmpty } }

    /// What placement needs to know of every hive at `now`: the scheduler's input.
    func placementView() -> [PlacementStateMachine.Hive] {
        entries.withLock { entries in
            entries.values.map { entry in
                PlacementStateMachine.Hive(
                    name: entry.record.name, url: entry.record.url, lastHeard: entry.lastHeard,
                    models: Set(entry.record.models),
                    modelSizes: Dictionary(entry.catalog.map { ($0.id, $0.sizeBytes) }, uniquingKeysWith: { first, _ in first }),
                    ramAvailableBytes: entry.record.ramAvailableBytes)
            }
        }
    }

    // MARK: Changing

    /// `POST /v1/hives`: `check` (the hive must answer, in this queen's API version) runs with
    /// the name held, so of concurrent adds of one name exactly one goes on and the others get
    /// 409 `HIVE_EXISTS` at once; a name already registered is 409 too.
    func add(name: String, url: String, source: String, check: () async throws(RbeeError) -> HiveHealth) async throws(RbeeError) {
        let held = pendingNames.withLock { pending in
            entries.withLock { $0[name] } == nil && pending.insert(name).inserted
        }
        guard held else {
            throw RbeeError(.hiveExists, "a hive named \(name) is already registered", details: ["name": .string(name)])
        }
        defer { pendingNames.withLock { _ = $0.remove(name) } }
        let health = try await check()
        var record = HiveRecord(
            name: name, url: url, status: .online, lastSeen: Date().timeIntervalSince1970, cpuCores: nil, ramAvailableBytes: nil, models: [],
            workers: 0, source: source)
        record.version = health.version
        record.apiVersion = health.apiVersion
        record.hiveID = health.hiveID
        let claim = HiveClaim(name: name, url: url, hiveID: health.hiveID, adds: true)
        let refusal = entries.withLock { entries -> RbeeError? in
            // A heartbeat may have registered it meanwhile, under this name or another.
            if case .refuse(let error) = claim.decide(among: Self.known(entries)) { return error }
            entries[name] = Entry(record: record, lastHeard: .now, saved: record)
            return nil
        }
        if let refusal { throw refusal }
        do {
            try await save(record)
        } catch {
            entries.withLock { _ = $0.removeValue(forKey: name) }
            throw error
        }
        logger.info("hive added", metadata: ["hive": "\(name)", "url": "\(url)", "source": "\(source)", "version": "\(health.version)"])
    }

    @discardableResult
    func remove(name: String) async throws(RbeeError) -> Bool {
        guard entries.withLock({ $0.removeValue(forKey: name) }) != nil else { return false }
        do {
            _ = try await database.write { db in try HiveRow.deleteOne(db, key: name) }
        } catch {
            throw RbeeError(.unavailable, "the hive registry is unavailable: \(error)", retryAfter: 5)
        }
        logger.info("hive removed", metadata: ["hive": "\(name)"])
        return true
    }

    /// A heartbeat (or a successful probe): registers an unknown hive, refreshes a known one.
    /// Returns whether the hive was unreachable (or unknown) before.
    @discardableResult
    func heard(
        name: String, url: String, cpuCores: Int?, ramAvailableBytes: Int?, workers: [HiveWorkerInfo], catalog: [ModelInfo]?,
        models: [String], source: String = "heartbeat", version: (String, Int)? = nil, hiveID: String? = nil, catalogVersion: Int? = nil
    ) async throws(RbeeError) -> Bool {
        let now = ContinuousClock.now
        let claim = HiveClaim(name: name, url: url, hiveID: hiveID, adds: false)
        let decided = entries.withLock { entries -> Result<(HiveRecord, Bool, Bool, String?), RbeeError> in
            var renamedFrom: String?
            switch claim.decide(among: Self.known(entries)) {
            case .refuse(let error):
                return .failure(error)
            case .rename(let old):
                // The same hive under another name: its entry moves to the new name.
                if var entry = entries.removeValue(forKey: old) {
                    entry.record.name = name
                    entry.saved = nil
                    entries[name] = entry
                }
                renamedFrom = old
            case .insert, .update:
                break
            }
            var entry =
                entries[name]
                ?? Entry(
                    record: HiveRecord(
                        name: name, url: url, status: .online, lastSeen: nil, cpuCores: nil, ramAvailableBytes: nil, models: [], workers: 0,
                        source: source), lastHeard: now)
            let wasDown = entries[name] == nil || now - entry.lastHeard > unreachableAfter
            entry.lastHeard = now
            entry.record.url = url
            if source != "heartbeat" { entry.record.source = source }
            entry.record.hiveID = hiveID ?? entry.record.hiveID
            entry.record.cpuCores = cpuCores ?? entry.record.cpuCores
            entry.record.ramAvailableBytes = ramAvailableBytes ?? entry.record.ramAvailableBytes
            if let version {
                entry.record.version = version.0
                entry.record.apiVersion = version.1
            }
            entry.record.lastSeen = Date().timeIntervalSince1970
            entry.workers = workers
            // A catalog older than the one held (a beat sent before a change the queen has
            // already fetched) never replaces it.
            if let catalog, Self.isNewer(catalogVersion, than: entry.record.catalogVersion) {
                entry.catalog = catalog
                entry.record.models = models
                entry.record.catalogVersion = catalogVersion ?? entry.record.catalogVersion
            }
            entries[name] = entry
            // The database keeps what matters after a restart; last_seen is written when the
            // hive comes back or every minute, not on every beat.
            let changed = wasDown || Self.needsSaving(entry.record, saved: entry.saved)
            if changed { entry.saved = entry.record }
            entries[name] = entry
            return .success((entry.record, wasDown, changed, renamedFrom))
        }
        let (record, wasDown, changed, renamedFrom) = try decided.get()
        if let renamedFrom {
            logger.notice("hive renamed", metadata: ["from": "\(renamedFrom)", "to": "\(name)", "hive_id": "\(hiveID ?? "")", "url": "\(url)"])
            do {
                _ = try await database.write { db in try HiveRow.deleteOne(db, key: renamedFrom) }
            } catch {
                throw RbeeError(.unavailable, "the hive registry is unavailable: \(error)", retryAfter: 5)
            }
        }
        if changed { try await save(record) }
        if wasDown, renamedFrom == nil { logger.info("hive online", metadata: ["hive": "\(name)", "url": "\(url)"]) }
        return wasDown || renamedFrom != nil
    }

    /// Whether the row differs in what matters after a restart, or its last_seen is a minute old.
    private static func needsSaving(_ record: HiveRecord, saved: HiveRecord?) -> Bool {
        guard let saved else { return true }
        if saved.url != record.url || saved.models != record.models || saved.source != record.source { return true }
        if saved.cpuCores != record.cpuCores || saved.version != record.version { return true }
        if saved.hiveID != record.hiveID || saved.catalogVersion != record.catalogVersion { return true }
        return (saved.lastSeen ?? 0) + 60 < (record.lastSeen ?? 0)
    }

    private static func known(_ entries: [String: Entry]) -> [HiveClaim.Known] {
        entries.values.map { HiveClaim.Known(name: $0.record.name, url: $0.record.url, hiveID: $0.record.hiveID) }
    }

    /// Whether a catalog of `version` may replace one of `held` (unversioned ones always may).
    private static func isNewer(_ version: Int?, than held: Int?) -> Bool {
        guard let version, let held else { return true }
        return version >= held
    }

    /// A fresher catalog than the last heartbeat's (after a spawn or a pull); kept in memory until
    /// the next heartbeat persists it.
    func updateCatalog(_ name: String, _ catalog: [ModelInfo], version: Int?) {
        entries.withLock { entries in
            guard let held = entries[name], Self.isNewer(version, than: held.record.catalogVersion) else { return }
            entries[name]?.catalog = catalog
            entries[name]?.record.models = catalog.map(\.id)
            entries[name]?.record.catalogVersion = version ?? held.record.catalogVersion
        }
    }

    /// Names of hives that just went silent for too long (each reported once).
    func sweep(reported: inout Set<String>) -> [String] {
        let now = ContinuousClock.now
        let silent = entries.withLock { entries in
            entries.values.filter { now - $0.lastHeard > unreachableAfter }.map(\.record.name)
        }
        let newly = silent.filter { !reported.contains($0) }
        reported = Set(silent)
        for name in newly { logger.warning("hive unreachable", metadata: ["hive": "\(name)", "silent_for": "\(unreachableAfter)"]) }
        return newly
    }

    private func save(_ record: HiveRecord) async throws(RbeeError) {
        do {
            try await database.write { db in try HiveRow(record).save(db) }
        } catch {
            throw RbeeError(.unavailable, "the hive registry is unavailable: \(error)", retryAfter: 5)
        }
    }
}

/// The registry's row; `HiveRecord` is the wire form.
struct HiveRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "hive"
    var name: String
    var url: String
    var source: String
    var lastSeen: Double?
    var cpuCores: Int?
    var ramAvailableBytes: Int?
    var models: String
    var addedAt: Double
    var version: String?
    var apiVersion: Int?
    var hiveID: String?
    var catalogVersion: Int?

    init(_ record: HiveRecord) {
        name = record.name
        url = record.url
        source = record.source
        lastSeen = record.lastSeen
        cpuCores = record.cpuCores
        ramAvailableBytes = record.ramAvailableBytes
        models = String(decoding: (try? JSONEncoder().encode(record.models)) ?? Data("[]".utf8), as: UTF8.self)
        addedAt = Date().timeIntervalSince1970
        version = record.version
        apiVersion = record.apiVersion
        hiveID = record.hiveID
        catalogVersion = record.catalogVersion
    }

    var record: HiveRecord {
        var record = HiveRecord(
            name: name, url: url, status: .unreachable, lastSeen: lastSeen, cpuCores: cpuCores, ramAvailableBytes: ramAvailableBytes,
            models: (try? JSONDecoder().decode([String].self, from: Data(models.utf8))) ?? [], workers: 0, source: source)
        record.version = version
        record.apiVersion = apiVersion
        record.hiveID = hiveID
        record.catalogVersion = catalogVersion
        return record
    }
}

/// A model alias: `name` stands for `model` (a catalog id or reference).
struct AliasRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "alias"
    var name: String
    var model: String
}
