/// What each slot's KV cells hold once its job has ended, and which free slot a new prompt goes
/// to: the one that already holds the longest common prefix of it (a conversation's next turn, a
/// shared system prompt), or, when none holds enough of it, the one least recently used, so the
/// prefixes most likely to come back are the last to be overwritten. llama-server picks its slot
/// the same way (`slot_prompt_similarity`).
struct SlotMemory {
    /// A slot is picked by prefix only when the prefix it holds is more than this fraction of the
    /// new prompt (llama-server's default).
    static let similarityThreshold = 0.1

    private var held: [[Int32]]
    private var lastUsed: [UInt64]
    private var clock: UInt64 = 0

    init(slots: Int) {
        held = Array(repeating: [], count: slots)
        lastUsed = Array(repeating: 0, count: slots)
    }

    /// The tokens whose cells the slot holds, from position 0.
    func tokens(of slot: Int) -> [Int32] { held[slot] }

    /// Where a prompt goes among the free slots, and how many of its tokens that slot already holds.
    struct Pick: Equatable {
        var slot: Int
        var sharedPrefix: Int
    }

    /// The free slot for `prompt`. Ties go to the slot used longest ago.
    func pick(for prompt: [Int32], among free: [Int]) -> Pick? {
        guard !free.isEmpty else { return nil }
        let byAge = free.sorted { (lastUsed[$0], $0) < (lastUsed[$1], $1) }
        if !prompt.isEmpty {
            var best: Pick?
            for slot in byAge where !held[slot].isEmpty {
                let shared = Self.commonPrefix(held[slot], prompt)
                if Double(shared) / Double(prompt.count) > Self.similarityThreshold, shared > (best?.sharedPrefix ?? 0) {
                    best = Pick(slot: slot, sharedPrefix: shared)
                }
            }
            if let best { return best }
        }
        let slot = byAge[0]
        return Pick(slot: slot, sharedPrefix: Self.commonPrefix(held[slot], prompt))
    }

    /// The slot now holds these tokens (a job ended in it, or its cells were cut back).
    mutating func hold(_ tokens: [Int32], in slot: Int) {
        clock += 1
        held[slot] = tokens
        lastUsed[slot] = clock
    }

    /// The slot's cells were cleared.
    mutating func forget(_ slot: Int) { held[slot] = [] }

    /// How many of a prompt's leading tokens the slot's cells can serve, of the `sharedPrefix` it
    /// holds: never the whole prompt (its last token is evaluated, so its logits are fresh), and
    /// for a sliding-window model only while the cells the first new token attends to are still
    /// held (`oldestPosition`, the slot's lowest position, -1 when empty: a window cache drops
    /// cells that fell out of the window); otherwise 0, a full prefill.
    static func reusable(sharedPrefix: Int, promptLength: Int, slidingWindow: Int, oldestPosition: Int) -> Int {
        let reuse = min(sharedPrefix, promptLength - 1)
        guard reuse > 0, oldestPosition >= 0 else { return 0 }
        if slidingWindow > 0, oldestPosition > 0, oldestPosition > reuse - slidingWindow { return 0 }
        return reuse
    }

    /// How many leading tokens two sequences share.
    static func commonPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
        let count = min(a.count, b.count)
        var index = 0
        while index < count, a[index] == b[index] { index += 1 }
        return index
    }
}
