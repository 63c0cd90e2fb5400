import Testing

@testable import RbeeInference

@Suite struct SlotMemoryTests {
    let system: [Int32] = Array(1...40)

    @Test func aPromptGoesToTheFreeSlotHoldingItsLongestPrefix() {
        var memory = SlotMemory(slots: 3)
        memory.hold(system + [50, 51], in: 0)
        memory.hold(Array(system.prefix(10)) + [99], in: 1)
        let pick = memory.pick(for: system + [60, 61], among: [0, 1, 2])
        #expect(pick == SlotMemory.Pick(slot: 0, sharedPrefix: 40))
    }

    @Test func aBusySlotIsNeverPicked() {
        var memory = SlotMemory(slots: 2)
        memory.hold(system, in: 0)
        #expect(memory.pick(for: system + [7], among: [1]) == SlotMemory.Pick(slot: 1, sharedPrefix: 0))
        #expect(memory.pick(for: system, among: []) == nil)
    }

    @Test func withoutEnoughSharedTheLeastRecentlyUsedSlotIsOverwritten() {
        var memory = SlotMemory(slots: 3)
        memory.hold([1, 2, 3], in: 2)
        memory.hold([4, 5, 6], in: 0)
        memory.hold([7, 8, 9], in: 1)
        // One shared token of 20 is 5 %, under the 10 % threshold: slot 2 was used longest ago.
        let prompt: [Int32] = [7] + Array(100..<119)
        #expect(memory.pick(for: prompt, among: [0, 1, 2])?.slot == 2)
        // An empty slot counts as never used.
        #expect(SlotMemory(slots: 2).pick(for: prompt, among: [1, 0])?.slot == 0)
    }

    @Test func reuseAlwaysLeavesTheLastPromptTokenToEvaluate() {
        #expect(SlotMemory.reusable(sharedPrefix: 40, promptLength: 40, slidingWindow: 0, oldestPosition: 0) == 39)
        #expect(SlotMemory.reusable(sharedPrefix: 30, promptLength: 40, slidingWindow: 0, oldestPosition: 0) == 30)
        #expect(SlotMemory.reusable(sharedPrefix: 1, promptLength: 1, slidingWindow: 0, oldestPosition: 0) == 0)
        // Cells that are gone cannot be reused, whatever the bookkeeping says.
        #expect(SlotMemory.reusable(sharedPrefix: 30, promptLength: 40, slidingWindow: 0, oldestPosition: -1) == 0)
    }

    @Test func aSlidingWindowModelReusesOnlyWhileTheWindowsCellsAreHeld() {
        // Nothing dropped yet: any prefix.
        #expect(SlotMemory.reusable(sharedPrefix: 900, promptLength: 1000, slidingWindow: 512, oldestPosition: 0) == 900)
        // Cells below 300 were dropped; the new tokens from 900 attend back to 389: all held.
        #expect(SlotMemory.reusable(sharedPrefix: 900, promptLength: 1000, slidingWindow: 512, oldestPosition: 300) == 900)
        // From 600 they would attend back to 89, which is gone: a full prefill.
        #expect(SlotMemory.reusable(sharedPrefix: 600, promptLength: 1000, slidingWindow: 512, oldestPosition: 300) == 0)
    }

    @Test func theCommonPrefixStopsAtTheFirstDifference() {
        #expect(SlotMemory.commonPrefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2)
        #expect(SlotMemory.commonPrefix([1, 2], [1, 2, 3]) == 2)
        #expect(SlotMemory.commonPrefix([], [1]) == 0)
    }
}
