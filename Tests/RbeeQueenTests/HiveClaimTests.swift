import RbeeAPI
import Testing

@testable import RbeeQueen

/// One hive, one entry: how a registration, heartbeat or probe is taken, given the entries the
/// registry has. The id a hive keeps in its home decides; names and URLs only for hives sending none.
@Suite struct HiveClaimTests {
    typealias Known = HiveClaim.Known

    let h1 = Known(name: "h1", url: "http://10.0.0.5:7835", hiveID: "hive-a")

    func heartbeat(_ name: String, _ url: String, _ id: String?) -> HiveClaim { HiveClaim(name: name, url: url, hiveID: id, adds: false) }
    func registration(_ name: String, _ url: String, _ id: String?) -> HiveClaim { HiveClaim(name: name, url: url, hiveID: id, adds: true) }

    func refusal(_ decision: HiveClaim.Decision) -> RbeeError? {
        if case .refuse(let error) = decision { error } else { nil }
    }

    @Test func aHiveUnknownByIdNameAndURLIsAdded() {
        #expect(heartbeat("box", "http://10.0.0.6:7835", "hive-b").decide(among: [h1]) == .insert)
        #expect(registration("box", "http://10.0.0.6:7835", "hive-b").decide(among: [h1]) == .insert)
    }

    @Test func theSameIdUnderAnotherNameRenamesTheEntryWhenTheHiveSaysSo() {
        // Registered by hand as h1, the hive's own heartbeat calls it by its host name.
        #expect(heartbeat("box", h1.url, "hive-a").decide(among: [h1]) == .rename(from: "h1"))
        // It moved to another address under its own name: the same entry.
        #expect(heartbeat("h1", "http://10.0.0.9:7835", "hive-a").decide(among: [h1]) == .update)
        // A rename onto a name another hive holds is refused, naming that hive.
        let other = Known(name: "box", url: "http://10.0.0.6:7835", hiveID: "hive-b")
        let taken = refusal(heartbeat("box", h1.url, "hive-a").decide(among: [h1, other]))
        #expect(taken?.code == .hiveExists && taken?.details["name"] == "box", "\(String(describing: taken))")
    }

    @Test func aRegistrationByHandOfAHiveAlreadyKnownIsAConflictNamingItsEntry() {
        let again = refusal(registration("h2", "http://10.0.0.5:7835", "hive-a").decide(among: [h1]))
        #expect(again?.code == .hiveExists && again?.details["name"] == "h1" && again?.message.contains("already registered as h1") == true)
        // Reached under another address (a second interface), the id still tells.
        let elsewhere = refusal(registration("h2", "http://192.168.1.5:7835", "hive-a").decide(among: [h1]))
        #expect(elsewhere?.details["name"] == "h1")
    }

    @Test func anotherIdAtARegisteredURLIsAConflictNamingTheEntry() {
        for claim in [heartbeat("intruder", h1.url, "hive-z"), registration("intruder", h1.url, "hive-z")] {
            let refused = refusal(claim.decide(among: [h1]))
            #expect(refused?.code == .hiveExists, "\(claim)")
            #expect(refused?.details["name"] == "h1" && refused?.details["hive_id"] == "hive-a" && refused?.message.contains("rbee hive rm h1") == true)
        }
        // And another hive claiming a registered name from another address.
        let impostor = refusal(heartbeat("h1", "http://10.0.0.7:7835", "hive-z").decide(among: [h1]))
        #expect(impostor?.details["name"] == "h1")
    }

    @Test func hivesThatSendNoIdAreKnownByTheirURLThenTheirName() {
        let legacy = Known(name: "old", url: "http://10.0.0.8:7835", hiveID: nil)
        #expect(heartbeat("old", legacy.url, nil).decide(among: [legacy]) == .update)
        // An entry from before ids adopts the id its hive now sends.
        #expect(heartbeat("old", legacy.url, "hive-c").decide(among: [legacy]) == .update)
        #expect(heartbeat("renamed", legacy.url, "hive-c").decide(among: [legacy]) == .rename(from: "old"))
        #expect(heartbeat("old", "http://10.0.0.9:7835", nil).decide(among: [legacy]) == .update, "it moved")
        #expect(refusal(registration("second", legacy.url, nil).decide(among: [legacy]))?.details["name"] == "old")
        #expect(refusal(registration("old", "http://10.0.0.9:7835", nil).decide(among: [legacy]))?.code == .hiveExists)
    }
}
