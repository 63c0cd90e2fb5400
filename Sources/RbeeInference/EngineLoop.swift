import DequeModule
import Foundation
internal import CLlama
import Logging
import RbeeAPI

/// The engine thread's side of `Engine`: it owns the llama.cpp context, the batch and the slots,
/// and runs the scheduling loop. Nothing here is touched by any other thread.
final class EngineLoop {
    private let engine: Engine
    private let configuration: EngineConfiguration
    private var logger: Logger { engine.logger }

    private var model: LlamaModel!
    private var context: OpaquePointer!
    /// Without an attached pool, ggml creates and joins its compute threads on every decode.
    private var threadpool: OpaquePointer?
    private var batch = llama_batch()
    private var slots: [Generation?]
    /// What each slot's cells hold after its job, for the next prompt that shares a prefix with it.
    private var memory: SlotMemory
    /// The model's attention window (0: full attention everywhere).
    private var slidingWindow = 0
    /// Slot states saved in host RAM before their cells were overwritten.
    private var promptCache: PromptCache
    private var pieceBuffer = [CChar](repeating: 0, count: 64)
    private var lastPublishedLayers = -1

    init(engine: Engine) {
        self.engine = engine
        self.configuration = engine.configuration
        self.slots = Array(repeating: nil, count: configuration.parallel)
        self.memory = SlotMemory(slots: configuration.parallel)
        self.promptCache = PromptCache(limitBytes: configuration.cacheRAMBytes)
        engine.shared.withLock { $0.promptCache = PromptCacheInfo(bytes: 0, entries: 0, limitBytes: promptCache.limitBytes) }
    }

    func run() {
        guard load() else {
            drainAfterFailure()
            return
        }
        defer {
            llama_batch_free(batch)
            llama_free(context)
            if let threadpool { ggml_threadpool_free(threadpool) }
        }
        while step() {}
        engine.shared.withLock { $0.phase = .stopped }
        logger.info("engine stopped")
    }

    // MARK: Loading

    private func load() -> Bool {
        let started = ContinuousClock.now
        let timeout = configuration.loadingTimeout
        var timedOut = false
        let layersTotal = max(1, engine.loading.latest.flatMap { if case .loading(_, let total, _, _) = $0 { total } else { nil } } ?? 1)
        let fileMB = ((try? FileManager.default.attributesOfItem(atPath: configuration.modelPath)[.size] as? Int) ?? 0) >> 20
        logger.info("loading model", metadata: ["path": "\(configuration.modelPath)"])
        do {
            let model = try LlamaModel.load(
                path: configuration.modelPath, gpuLayers: configuration.gpuLayers, repackWeights: configuration.repackWeights,
                chatTemplateFile: configuration.chatTemplateFile
            ) { [engine] fraction in
                let layers = min(layersTotal, Int(fraction * Double(layersTotal)))
                if layers != self.lastPublishedLayers {
                    self.lastPublishedLayers = layers
                    let gpu = self.configuration.gpuLayers != 0
                    let loadedMB = Int(fraction * Double(fileMB))
                    engine.loading.publish(
                        .loading(layersLoaded: layers, layersTotal: layersTotal, vramMB: gpu ? loadedMB : 0, ramMB: gpu ? 0 : loadedMB))
                }
                if ContinuousClock.now - started > timeout { timedOut = true }
                return !timedOut && !engine.shared.withLock { $0.stopRequested }
            }
            var params = llama_context_default_params()
            params.n_ctx = UInt32(configuration.contextSize * configuration.parallel)
            params.n_batch = UInt32(configuration.batchSize)
            params.n_ubatch = UInt32(configuration.batchSize)
            params.n_seq_max = UInt32(configuration.parallel)
            params.n_threads = Int32(configuration.threads)
            params.n_threads_batch = Int32(configuration.threads)
            // One KV stream per slot: sequences do not share a prefix, and each slot's attention
            // is then computed alone, so output does not depend on what runs beside it.
            params.kv_unified = false
            // CPU flash attention picks split-KV, tiled or plain kernels by batch shape; plain
            // attention computes each row the same way whatever runs beside it.
            if !configuration.repackWeights { params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED }
            // A sliding-window model keeps every cell, not only the window's (llama.cpp's default
            // here, said outright): any prefix a slot holds can then be reused. For Gemma 3 270M
            // this is 72 MiB per 4096-token slot instead of 27.
            params.swa_full = true
            params.no_perf = true
            guard let context = llama_init_from_model(model.pointer, params) else {
                throw RbeeError(.modelLoadFailed, "llama.cpp could not create a context of \(params.n_ctx) tokens")
            }
            self.model = model
            self.context = context
            var poolParameters = ggml_threadpool_params_default(Int32(configuration.threads))
            if let threadpool = ggml_threadpool_new(&poolParameters) {
                self.threadpool = threadpool
                llama_attach_threadpool(context, threadpool, threadpool)
            }
            self.batch = llama_batch_init(Int32(configuration.batchSize), 0, 1)
            self.slidingWindow = Int(llama_model_n_swa(model.pointer))
            let elapsed = ContinuousClock.now - started
            engine.shared.withLock { state in
                state.model = model
                if case .loading = state.phase { state.phase = .ready }
            }
            engine.loading.publish(.loading(layersLoaded: layersTotal, layersTotal: layersTotal, vramMB: 0, ramMB: fileMB))
            engine.loading.publish(.ready)
            logger.info(
                "model ready",
                metadata: ["model": "\(model.summary)", "load_ms": "\(Int(elapsed.milliseconds))", "slots": "\(configuration.parallel)",
                           "ctx_per_slot": "\(configuration.contextSize)", "threads": "\(configuration.threads)"])
            if slidingWindow > 0 {
                logger.info(
                    "prompt reuse: sliding-window model with a full-size window cache, so every prefix a slot holds can be reused",
                    metadata: ["sliding_window": "\(slidingWindow)"])
            }
            return true
        } catch {
            let failure =
                timedOut
                ? RbeeError(.loadingTimeout, "the model did not load within \(configuration.loadingTimeout)")
                : error as? RbeeError ?? RbeeError(.modelLoadFailed, "\(error)")
            logger.error("model failed to load", metadata: ["error": "\(failure.message)"])
            engine.shared.withLock { $0.phase = .failed(failure) }
            engine.loading.publish(.failed(failure))
            return false
        }
    }

    /// After a failed load, every queued request gets the load error; later ones are refused.
    private func drainAfterFailure() {
        let (pending, failure): ([GenerationJob], RbeeError?) = engine.shared.withLock { state in
            defer { state.pending.removeAll() }
            if case .failed(let error) = state.phase { return (Array(state.pending), error) }
            return (Array(state.pending), nil)
        }
        let error = RbeeError(.unavailable, "the model failed to load: \(failure?.message ?? "unknown error")")
        pending.forEach { $0.fail(error) }
    }

    // MARK: Scheduling

    /// One turn of the loop: apply cancellations, admit queued jobs, decode one batch.
    /// Returns false when the engine should stop.
    private func step() -> Bool {
        let now = ContinuousClock.now
        let freeSlots = slots.indices.filter { slots[$0] == nil }
        let (admitted, cancelled, cancelAll, stop, expired): ([GenerationJob], Set<String>, Bool, Bool, [GenerationJob]) =
            engine.shared.withLock { state in
                var expired: [GenerationJob] = []
                state.pending.removeAll { job in
                    guard let deadline = job.deadline, deadline <= now else { return false }
                    expired.append(job)
                    return true
                }
                var admitted: [GenerationJob] = []
                while admitted.count < freeSlots.count, let job = state.pending.popFirst() {
                    admitted.append(job)
                    state.active[job.id] = job
                }
                let cancelled = state.cancelled
                state.cancelled.removeAll()
                let cancelAll = state.cancelAll
                state.cancelAll = false
                return (admitted, cancelled, cancelAll, state.stopRequested, expired)
            }
        for job in expired {
            job.fail(RbeeError(.deadlineExceeded, "the request deadline passed while it was queued"))
        }

        for index in slots.indices {
            guard let generation = slots[index] else { continue }
            if cancelAll || cancelled.contains(generation.job.id) {
                finish(slot: index, reason: .cancelled)
            } else if let deadline = generation.job.deadline, deadline <= now {
                fail(slot: index, RbeeError(.deadlineExceeded, "the request deadline passed after \(generation.generated) tokens"))
            }
        }
        var free = freeSlots
        for job in admitted {
            admit(job, among: &free, now: now)
        }

        guard slots.contains(where: { $0 != nil }) else {
            if stop { return false }
            // Idle: sleep until a submit or cancel signals, waking now and then for deadlines.
            _ = engine.wakeup.wait(timeout: .now() + .milliseconds(500))
            return true
        }
        decodeStep()
        return true
    }

    private func admit(_ job: GenerationJob, among free: inout [Int], now: ContinuousClock.Instant) {
        let prepared: PreparedPrompt
        do throws(RbeeError) {
            if let ready = job.prepared { prepared = ready } else { prepared = try engine.prepare(job.request, model: model) }
        } catch {
            engine.shared.withLock { _ = $0.active.removeValue(forKey: job.id) }
            job.fail(error)
            return
        }
        let request = job.request
        let tokens = prepared.tokens
        guard var pick = memory.pick(for: tokens, among: free) else {
            engine.shared.withLock { _ = $0.active.removeValue(forKey: job.id) }
            job.fail(RbeeError(.internalError, "no free slot for an admitted job"))
            return
        }
        free.removeAll { $0 == pick.slot }
        let slot = pick.slot
        if request.cachePrompt, let saved = promptCache.bestMatch(for: tokens) {
            // A saved sliding-window state holds only the last window of its cells.
            let held = promptCache.entries[saved.index].tokens.count
            let fromRAM = SlotMemory.reusable(
                sharedPrefix: saved.sharedPrefix, promptLength: tokens.count, slidingWindow: slidingWindow,
                oldestPosition: slidingWindow > 0 ? max(0, held - slidingWindow) : 0)
            let fromSlot = SlotMemory.reusable(
                sharedPrefix: pick.sharedPrefix, promptLength: tokens.count, slidingWindow: slidingWindow,
                oldestPosition: Int(llama_memory_seq_pos_min(llama_get_memory(context), Int32(slot))))
            if fromRAM > fromSlot, Double(fromRAM) / Double(tokens.count) > SlotMemory.similarityThreshold {
                pick.sharedPrefix = restore(saved.index, into: slot) ? saved.sharedPrefix : 0
            }
        }
        let cached = reuse(slot: slot, sharedPrefix: request.cachePrompt ? pick.sharedPrefix : 0, promptLength: tokens.count)
        var generation = Generation(
            job: job, prompt: tokens, admittedAt: now,
            sampler: SlotSampler(
                request.sampling, vocabularySize: model.vocabularySize, grammar: prepared.grammar.flatMap { $0.makeSampler(model: model) }),
            stopMatcher: StopSequenceMatcher(prepared.stops),
            maxTokens: min(request.maxTokens, configuration.contextSize - tokens.count))
        generation.cached = cached
        generation.prefilled = cached
        generation.specialTokens = prepared.specialTokens
        if let format = prepared.chatFormat {
            // A format llama.cpp cannot describe leaves the output plain text.
            generation.parser = try? ChatOutputParser(rendering: format)
        }
        generation.position = Int32(cached)
        slots[slot] = generation
        job.emit(.started(jobID: job.id, model: configuration.modelName, queueMs: (now - job.submittedAt).milliseconds))
    }

    /// Keeps the first tokens of the slot's cells that the new prompt shares (at most
    /// `sharedPrefix`, as far as `SlotMemory.reusable` allows) and removes the rest. Returns how
    /// many it kept: prefill starts there.
    private func reuse(slot: Int, sharedPrefix: Int, promptLength: Int) -> Int {
        let cells = llama_get_memory(context)
        let oldest = Int(llama_memory_seq_pos_min(cells, Int32(slot)))
        var keep = SlotMemory.reusable(sharedPrefix: sharedPrefix, promptLength: promptLength, slidingWindow: slidingWindow, oldestPosition: oldest)
        // Most of what the slot holds is about to go: keep it in RAM for a prompt that comes back to it.
        if memory.tokens(of: slot).count > 2 * keep { save(slot: slot) }
        // A model whose cells cannot be cut back part-way (recurrent state) starts over.
        if keep > 0, !llama_memory_seq_rm(cells, Int32(slot), Int32(keep), -1) { keep = 0 }
        if keep == 0 { _ = llama_memory_seq_rm(cells, Int32(slot), -1, -1) }
        memory.hold(Array(memory.tokens(of: slot).prefix(keep)), in: slot)
        return keep
    }

    // MARK: Host-RAM prompt cache

    /// Saves the slot's state (its cells and the tokens they hold) into the RAM cache.
    private func save(slot: Int) {
        let tokens = memory.tokens(of: slot)
        guard promptCache.isEnabled, tokens.count >= Self.smallestSavedPrompt, !promptCache.covers(tokens) else { return }
        let size = llama_state_seq_get_size_ext(context, Int32(slot), 0)
        guard size > 0, size <= promptCache.limitBytes else { return }
        var state = [UInt8](repeating: 0, count: size)
        let written = state.withUnsafeMutableBufferPointer { llama_state_seq_get_data_ext(context, $0.baseAddress, size, Int32(slot), 0) }
        guard written == size else { return }
        promptCache.save(tokens: tokens, state: state)
        publishPromptCache()
        logger.debug("slot state saved to RAM", metadata: ["slot": "\(slot)", "tokens": "\(tokens.count)", "bytes": "\(size)"])
    }

    /// Replaces the slot's cells with a saved state (saving what the slot held first). False
    /// when llama.cpp refuses the state: the slot is then empty.
    private func restore(_ index: Int, into slot: Int) -> Bool {
        let entry = promptCache.take(index)
        save(slot: slot)
        publishPromptCache()
        let cells = llama_get_memory(context)
        _ = llama_memory_seq_rm(cells, Int32(slot), -1, -1)
        let read = entry.state.withUnsafeBufferPointer { llama_state_seq_set_data_ext(context, $0.baseAddress, $0.count, Int32(slot), 0) }
        guard read == entry.state.count else {
            _ = llama_memory_seq_rm(cells, Int32(slot), -1, -1)
            memory.forget(slot)
            logger.warning("a saved slot state could not be restored", metadata: ["slot": "\(slot)", "tokens": "\(entry.tokens.count)"])
            return false
        }
        memory.hold(entry.tokens, in: slot)
        logger.debug("slot state restored from RAM", metadata: ["slot": "\(slot)", "tokens": "\(entry.tokens.count)"])
        return true
    }

    /// Prompts shorter than this are quicker to prefill again than to save and restore.
    static let smallestSavedPrompt = 32

    private func publishPromptCache() {
        let info = PromptCacheInfo(bytes: promptCache.bytes, entries: promptCache.entries.count, limitBytes: promptCache.limitBytes)
        engine.shared.withLock { $0.promptCache = info }
    }

    /// One scheduling step: a single `llama_decode` with the next token of every generating slot
    /// (continuous batching), then prompt chunks for the slots still prefilling. A decode step's
    /// logits do not depend on what it is batched with, but a prompt's do depend on how it is cut
    /// into micro-batches; a `cache_prompt: false` prompt is prefilled alone, in chunks fixed by
    /// its own length, which keeps its seeded output identical alone and under load. A long
    /// prompt holds the generating slots back by at most one chunk per token.
    private func decodeStep() {
        var generating: [Int] = []
        batch.n_tokens = 0
        for index in slots.indices {
            guard var generation = slots[index], generation.isGenerating else { continue }
            generation.batchIndex = batch.n_tokens
            add(generation.lastToken, position: generation.position, sequence: Int32(index), logits: true)
            generation.position += 1
            generation.decodedOutput.append(generation.lastToken)
            slots[index] = generation
            generating.append(index)
        }
        if !generating.isEmpty, decode(slots: generating) {
            sampleAll(generating)
        }

        // Prompts that may reuse cells (`cache_prompt`) are prefilled together, one call of up to
        // a batch for all of them, as llama-server does: their logits already depend on what
        // their slot held. The others, each alone, in chunks fixed by the prompt alone.
        batch.n_tokens = 0
        var together: [Int] = []
        for index in slots.indices where Int(batch.n_tokens) < configuration.batchSize {
            guard let generation = slots[index], !generation.isGenerating, generation.job.request.cachePrompt else { continue }
            addPromptChunk(slot: index, limit: configuration.batchSize - Int(batch.n_tokens))
            together.append(index)
        }
        if !together.isEmpty, decode(slots: together) {
            sampleAll(together)
        }
        for index in slots.indices {
            guard let generation = slots[index], !generation.isGenerating, !generation.job.request.cachePrompt else { continue }
            batch.n_tokens = 0
            addPromptChunk(slot: index, limit: configuration.batchSize)
            if decode(slots: [index]), slots[index]?.isGenerating == true {
                sampleAll([index])
            }
        }
    }

    /// Adds the slot's next prompt tokens (at most `limit`) to the batch; logits for the last
    /// prompt token, whose position in the batch `sampleAll` reads.
    private func addPromptChunk(slot index: Int, limit: Int) {
        guard var generation = slots[index] else { return }
        let take = min(generation.prompt.count - generation.prefilled, limit)
        for offset in 0..<take {
            let last = generation.prefilled + offset == generation.prompt.count - 1
            add(generation.prompt[generation.prefilled + offset], position: generation.position, sequence: Int32(index), logits: last)
            generation.position += 1
        }
        generation.prefilled += take
        generation.batchIndex = generation.isGenerating ? batch.n_tokens - 1 : -1
        slots[index] = generation
    }

    private func add(_ token: Int32, position: Int32, sequence: Int32, logits: Bool) {
        let index = Int(batch.n_tokens)
        batch.token[index] = token
        batch.pos[index] = position
        batch.n_seq_id[index] = 1
        batch.seq_id[index]![0] = sequence
        batch.logits[index] = logits ? 1 : 0
        batch.n_tokens += 1
    }

    /// Decodes the batch; on failure the slots in it end with an error. Returns whether it succeeded.
    private func decode(slots indices: [Int]) -> Bool {
        let status = llama_decode(context, batch)
        guard status == 0 else {
            let error = RbeeError(.internalError, Self.describeDecodeFailure(status))
            logger.error("llama_decode failed", metadata: ["status": "\(status)"])
            for index in indices { fail(slot: index, error) }
            return false
        }
        return true
    }

    private func sampleAll(_ indices: [Int]) {
        let now = ContinuousClock.now
        for index in indices {
            guard let generation = slots[index], generation.batchIndex >= 0 else { continue }
            guard let token = generation.sampler.sample(context: context, index: generation.batchIndex) else {
                fail(
                    slot: index,
                    RbeeError.invalid([
                        .init(field: "grammar", message: "admits no token of this model's vocabulary after \(generation.generated) generated tokens")
                    ]))
                continue
            }
            handle(token: token, slot: index, now: now)
        }
    }

    private func handle(token: Int32, slot index: Int, now: ContinuousClock.Instant) {
        guard var generation = slots[index] else { return }
        generation.batchIndex = -1
        if generation.firstTokenAt == nil { generation.firstTokenAt = now }
        generation.lastTokenAt = now
        generation.lastToken = token

        if !generation.job.request.ignoreEOS, model.isEndOfGeneration(token) {
            slots[index] = generation
            finish(slot: index, reason: .eos)
            return
        }
        generation.generated += 1
        let special = !generation.specialTokens.isEmpty && generation.specialTokens.contains(token)
        let bytes = model.piece(token, special: special, into: &pieceBuffer).map { UInt8(bitPattern: $0) }
        let text = generation.utf8.append(bytes)
        let (emit, stopped) = text.isEmpty ? ("", false) : generation.stopMatcher.feed(text)
        if !emit.isEmpty, generation.publish(emit) { generation.reasoningTokens += 1 }
        slots[index] = generation
        if stopped {
            finish(slot: index, reason: .stopSequence)
        } else if generation.toolCalls > 0, generation.job.request.tools?.parallelCalls == false,
            generation.sampler.grammarAllowsEnd(model.endToken)
        {
            // One call was asked for and it is complete: the answer ends here.
            finish(slot: index, reason: .eos)
        } else if generation.generated >= generation.maxTokens {
            finish(slot: index, reason: .maxTokens)
        }
    }

    // MARK: Ending a slot

    private func finish(slot index: Int, reason: StopReason) {
        guard var generation = slots[index] else { return }
        if reason != .cancelled {
            // Nothing more will come: held-back text was never a stop sequence, so it is output.
            let rest = generation.utf8.flush()
            let tail = generation.stopMatcher.feed(rest).emit + generation.stopMatcher.flush()
            generation.publish(tail, final: true)
        }
        release(slot: index, holding: generation.heldTokens)
        generation.job.finish(.end(generation.stats(reason: reason)))
        logger.debug("job ended", metadata: ["job_id": "\(generation.job.id)", "reason": "\(reason.rawValue)", "tokens": "\(generation.generated)"])
    }

    private func fail(slot index: Int, _ error: RbeeError) {
        guard let generation = slots[index] else { return }
        release(slot: index, holding: nil)
        generation.job.fail(error)
    }

    /// Frees the slot. Its cells stay for a later prompt that shares their prefix (`holding`, the
    /// tokens they hold); after a failure (`nil`) what they hold is unknown, so they are cleared.
    private func release(slot index: Int, holding tokens: [Int32]?) {
        guard let generation = slots[index] else { return }
        if let tokens {
            memory.hold(tokens, in: index)
        } else {
            _ = llama_memory_seq_rm(llama_get_memory(context), Int32(index), -1, -1)
            memory.forget(index)
        }
        slots[index] = nil
        engine.shared.withLock { _ = $0.active.removeValue(forKey: generation.job.id) }
    }

    static func describeDecodeFailure(_ status: Int32) -> String {
        switch status {
        case 1: "llama_decode found no KV cache space for the batch"
        case 2: "llama_decode was aborted"
        case -1: "llama_decode rejected the batch as invalid"
        default: "llama_decode failed with status \(status)"
        }
    }
}

/// A job in a slot: its prompt, progress through it, and the state of its output.
struct Generation {
    let job: GenerationJob
    let prompt: [Int32]
    let admittedAt: ContinuousClock.Instant
    let sampler: SlotSampler
    var stopMatcher: StopSequenceMatcher
    let maxTokens: Int
    var utf8 = UTF8Assembler()
    /// Prompt tokens already decoded (the cached ones included).
    var prefilled = 0
    /// Prompt tokens the slot already held when the job came in.
    var cached = 0
    /// Generated tokens decoded into the slot's cells (each one but the last sampled).
    var decodedOutput: [Int32] = []
    /// Next position in the slot's sequence.
    var position: Int32 = 0
    var lastToken: Int32 = 0
    /// Where this slot's logits are in the current batch, or -1.
    var batchIndex: Int32 = -1
    var generated = 0
    var emitted = 0
    var firstTokenAt: ContinuousClock.Instant?
    var lastTokenAt: ContinuousClock.Instant?
    /// Reads the output in its chat format (reasoning, content, tool calls); nil for plain text.
    var parser: ChatOutputParser?
    /// Tokens detokenized as their special text.
    var specialTokens: Set<Int32> = []
    var reasoningEmitted = 0
    var reasoningTokens = 0
    var toolCalls = 0

    init(job: GenerationJob, prompt: [Int32], admittedAt: ContinuousClock.Instant, sampler: SlotSampler, stopMatcher: StopSequenceMatcher, maxTokens: Int) {
        self.job = job
        self.prompt = prompt
        self.admittedAt = admittedAt
        self.sampler = sampler
        self.stopMatcher = stopMatcher
        self.maxTokens = max(1, maxTokens)
    }

    /// Sends generated text as events: `token`s, or through the parser reasoning, content and
    /// tool-call pieces (`final`: the output has ended). Returns whether the text was reasoning.
    @discardableResult
    mutating func publish(_ text: String, final: Bool = false) -> Bool {
        guard let parser else {
            if !text.isEmpty {
                job.emit(.token(text: text, index: emitted))
                emitted += 1
            }
            return false
        }
        let update: ChatOutputUpdate
        do {
            update = try parser.feed(text, final: final)
        } catch {
            // The reader failed (it never should): the rest is plain text.
            self.parser = nil
            return publish(text, final: final)
        }
        var reasoning = false
        for delta in update.deltas {
            if let piece = delta.reasoningContent {
                job.emit(.reasoning(text: piece, index: reasoningEmitted))
                reasoningEmitted += 1
                reasoning = true
            }
            if let piece = delta.content {
                job.emit(.token(text: piece, index: emitted))
                emitted += 1
            }
            if let index = delta.toolCallIndex {
                job.emit(.toolCall(ToolCallDelta(index: index, id: delta.id, name: delta.name, arguments: delta.arguments ?? "")))
            }
        }
        toolCalls = update.message.toolCalls.count
        return reasoning
    }

    var isGenerating: Bool { prefilled == prompt.count }

    /// The tokens the slot's cells hold, from position 0.
    var heldTokens: [Int32] { Array(prompt[..<prefilled]) + decodedOutput }

    func stats(reason: StopReason) -> GenerationStats {
        let ttft = firstTokenAt.map { ($0 - job.submittedAt).milliseconds } ?? 0
        let decode = if let first = firstTokenAt, let last = lastTokenAt { (last - first).milliseconds } else { 0.0 }
        let rate = decode > 0 && generated > 1 ? Double(generated - 1) / (decode / 1000) : 0
        return GenerationStats(
            tokensOut: generated, promptTokens: prompt.count, ttftMs: ttft, decodeMs: decode, tokensPerSec: rate, stopReason: reason,
            cachedTokens: cached, reasoningTokens: reasoningTokens, toolCalls: toolCalls)
    }
}

