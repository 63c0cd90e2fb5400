import Testing

@testable import RbeeInference

@Suite struct PromptCacheTests {
    static func state(_ bytes: Int) -> [UInt8] { [UInt8](repeating: 7, count: bytes) }

    @Test func aPromptFindsTheStateSharingItsLongestPrefix() {
        var cache = PromptCache(limitBytes: 1000)
        cache.save(tokens: [1, 2, 3, 4], state: Self.state(10))
        cache.save(tokens: [1, 2, 9], state: Self.state(10))
        let match = cache.bestMatch(for: [1, 2, 3, 4, 5])
        #expect(match?.sharedPrefix == 4 && cache.entries[match!.index].tokens == [1, 2, 3, 4])
        #expect(cache.bestMatch(for: [8]) == nil)
    }

    @Test func theLeastRecentlyUsedStatesGoFirstWhenTheBoundIsReached() {
        var cache = PromptCache(limitBytes: 100)
        cache.save(tokens: [1], state: Self.state(40))
        cache.save(tokens: [2], state: Self.state(40))
        cache.save(tokens: [3], state: Self.state(40))
        #expect(cache.entries.map(\.tokens) == [[2], [3]] && cache.bytes == 80)
        // One larger than the whole cache is not kept, and evicts nothing.
        cache.save(tokens: [4], state: Self.state(101))
        #expect(cache.entries.count == 2)
    }

    @Test func aStateThatIsAPrefixOfANewerOneIsDropped() {
        var cache = PromptCache(limitBytes: 1000)
        cache.save(tokens: [1, 2], state: Self.state(10))
        cache.save(tokens: [1, 2, 3], state: Self.state(20))
        #expect(cache.entries.map(\.tokens) == [[1, 2, 3]] && cache.bytes == 20)
        // And one already covered by a saved state adds nothing.
        cache.save(tokens: [1, 2], state: Self.state(10))
        #expect(cache.entries.count == 1 && cache.covers([1, 2]) && !cache.covers([1, 3]))
    }

    @Test func aTakenStateLeavesTheCache() {
        var cache = PromptCache(limitBytes: 1000)
        cache.save(tokens: [5, 6], state: Self.state(30))
        let entry = cache.take(0)
        #expect(entry.tokens == [5, 6] && cache.entries.isEmpty && cache.bytes == 0)
    }

    @Test func aZeroBoundKeepsNothing() {
        var cache = PromptCache(limitBytes: 0)
        cache.save(tokens: [1], state: Self.state(1))
        #expect(!cache.isEnabled && cache.entries.isEmpty)
    }
}
