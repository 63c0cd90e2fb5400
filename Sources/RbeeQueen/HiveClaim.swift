import RbeeAPI

/// What a registration, heartbeat or probe says a hive is (a name, a URL, maybe its id), and how
/// the registry takes it: one hive is one entry. The hive's id, created once and kept in its
/// home, decides who it is; a name or a URL alone decides only for hives that send no id.
struct HiveClaim: Sendable, Equatable {
    var name: String
    var url: String
    var hiveID: String?
    /// `POST /v1/hives`: adds a hive and never changes one already registered.
    var adds: Bool

    /// An entry of the registry, as far as identity goes.
    struct Known: Sendable, Equatable {
        var name: String
        var url: String
        var hiveID: String?
    }

    enum Decision: Sendable, Equatable {
        /// A hive the registry does not know yet.
        case insert
        /// The entry of that name is this hive.
        case update
        /// The entry of that name is this hive, now called `claim.name`.
        case rename(from: String)
        /// A 409 naming the entry in the way.
        case refuse(RbeeError)
    }

    func decide(among known: [Known]) -> Decision {
        let named = known.first { $0.name == name }
        if let hiveID, let same = known.first(where: { $0.hiveID == hiveID }) {
            if adds { return .refuse(alreadyRegistered(same, reason: "this hive (\(hiveID)) is already registered as \(same.name)")) }
            if same.name == name { return .update }
            if let named { return .refuse(nameTaken(named)) }
            return .rename(from: same.name)
        }
        if let atURL = known.first(where: { $0.url == url }) {
            if let theirs = atURL.hiveID, let hiveID, theirs != hiveID {
                return .refuse(
                    alreadyRegistered(
                        atURL, reason: "another hive (\(theirs)) is registered at \(url) as \(atURL.name); remove it first (rbee hive rm \(atURL.name))"))
            }
            // One of the two sent no id: the same address is taken to be the same hive.
            if adds { return .refuse(alreadyRegistered(atURL, reason: "the hive at \(url) is already registered as \(atURL.name)")) }
            if atURL.name == name { return .update }
            if let named { return .refuse(nameTaken(named)) }
            return .rename(from: atURL.name)
        }
        guard let named else { return .insert }
        if adds { return .refuse(nameTaken(named)) }
        if let theirs = named.hiveID, let hiveID, theirs != hiveID { return .refuse(nameTaken(named)) }
        // The hive of that name moved to another address (or sends its id for the first time).
        return .update
    }

    private func alreadyRegistered(_ entry: Known, reason: String) -> RbeeError {
        RbeeError(.hiveExists, reason, details: details(entry))
    }

    private func nameTaken(_ entry: Known) -> RbeeError {
        RbeeError(.hiveExists, "a hive named \(entry.name) is already registered (at \(entry.url))", details: details(entry))
    }

    private func details(_ entry: Known) -> [String: JSONValue] {
        var details: [String: JSONValue] = ["name": .string(entry.name), "url": .string(entry.url)]
        if let id = entry.hiveID { details["hive_id"] = .string(id) }
        return details
    }
}
