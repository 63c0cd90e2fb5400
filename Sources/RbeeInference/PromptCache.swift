/// Slot states kept in host RAM (llama-server's `--cache-ram`): before a slot's cells are
/// overwritten by an unrelated prompt, its state is saved here, and a later prompt that shares
/// more with a saved state than with any slot has it restored instead of prefilling again.
///
/// Bounded by bytes, least recently used first out. A state whose tokens are a prefix of a newer
/// one's is dropped: the newer one serves every prompt the older one could.
struct PromptCache {
    struct Entry {
        var tokens: [Int32]
        var state: [UInt8]
        var lastUsed: UInt64
    }

    let limitBytes: Int
    private(set) var entries: [Entry] = []
    private(set) var bytes = 0
    private var clock: UInt64 = 0

    init(limitBytes: Int) { self.limitBytes = max(0, limitBytes) }

    var isEnabled: Bool { limitBytes > 0 }

    /// Keeps a slot's state. Entries it extends are dropped; then the least recently used go
    /// until it fits. A state larger than the whole cache is not kept.
    mutating func save(tokens: [Int32], state: [UInt8]) {
        guard isEnabled, !tokens.isEmpty, state.count <= limitBytes, !covers(tokens) else { return }
        entries.removeAll { entry in
            let extended = entry.tokens.count < tokens.count && SlotMemory.commonPrefix(entry.tokens, tokens) == entry.tokens.count
            if extended { bytes -= entry.state.count }
            return extended
        }
        while bytes + state.count > limitBytes, let oldest = entries.indices.min(by: { entries[$0].lastUsed < entries[$1].lastUsed }) {
            bytes -= entries.remove(at: oldest).state.count
        }
        clock += 1
        entries.append(Entry(tokens: tokens, state: state, lastUsed: clock))
        bytes += state.count
    }

    /// Whether an entry already holds these tokens (or more, starting with them).
    func covers(_ tokens: [Int32]) -> Bool {
        entries.contains { $0.tokens.count >= tokens.count && SlotMemory.commonPrefix($0.tokens, tokens) == tokens.count }
    }

    /// The entry sharing the longest prefix with `prompt`, and how long that prefix is.
    func bestMatch(for prompt: [Int32]) -> (index: Int, sharedPrefix: Int)? {
        var best: (index: Int, sharedPrefix: Int)?
        for (index, entry) in entries.enumerated() {
            let shared = SlotMemory.commonPrefix(entry.tokens, prompt)
            if shared > (best?.sharedPrefix ?? 0) { best = (index, shared) }
        }
        return best
    }

    /// Takes an entry out to restore it into a slot (which then holds it; it comes back here
    /// when that slot is next overwritten).
    mutating func take(_ index: Int) -> Entry {
        let entry = entries.remove(at: index)
        bytes -= entry.state.count
        return entry
    }
}
