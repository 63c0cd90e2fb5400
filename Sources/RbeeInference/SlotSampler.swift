internal import CLlama
import RbeeAPI

/// One request's sampling on the engine thread: repetition penalty, top-k, top-p, min-p,
/// temperature, then a seeded draw; greedy when the temperature is 0.
///
/// llama.cpp's samplers start from a candidate entry for every token of the vocabulary (262,144
/// for Gemma 3), which cost about 0.5 ms a token. Without a repetition penalty the top-k cut
/// comes first, so it is done here in one pass over the logits and only those k candidates go
/// through the rest of llama.cpp's chain; greedy is a plain argmax. Same request, same path, so
/// seeded output stays reproducible.
///
/// With a grammar (structured output) the token is sampled as usual and only that token is checked
/// against the grammar; the grammar is applied to the whole vocabulary only when it rejects it, as
/// llama.cpp's common sampler does: most tokens pass, so constrained decoding stays cheap.
final class SlotSampler {
    private enum Mode {
        case greedy
        case topK(Int)
        case fullChain
    }

    private let chain: UnsafeMutablePointer<llama_sampler>
    /// The job's own grammar state, owned and freed here.
    private let grammar: UnsafeMutablePointer<llama_sampler>?
    private let mode: Mode
    private let vocabularySize: Int
    private var candidates: [llama_token_data] = []

    /// `grammar`, when given, is owned by the sampler from now on.
    init(_ parameters: SamplingParameters, vocabularySize: Int32, grammar: UnsafeMutablePointer<llama_sampler>? = nil) {
        self.vocabularySize = Int(vocabularySize)
        self.grammar = grammar
        chain = llama_sampler_chain_init(llama_sampler_chain_default_params())
        let penalised = parameters.repetitionPenalty != 1.0 || parameters.frequencyPenalty != 0 || parameters.presencePenalty != 0
        if penalised {
            llama_sampler_chain_add(
                chain,
                llama_sampler_init_penalties(
                    vocabularySize, 64, Float(parameters.repetitionPenalty), Float(parameters.frequencyPenalty),
                    Float(parameters.presencePenalty)))
        }
        if parameters.temperature <= 0 {
            llama_sampler_chain_add(chain, llama_sampler_init_greedy())
            mode = penalised ? .fullChain : .greedy
            return
        }
        let topK = parameters.topK > 0 && parameters.topK < Int(vocabularySize) ? parameters.topK : 0
        // The one-pass selection inserts into a sorted array: fast for the usual k (40), but
        // O(vocabulary × k) for a large one (k = 19,455 took seconds a token); llama.cpp's top-k
        // takes those.
        let ownTopK = !penalised && topK > 0 && topK <= Self.largestOwnTopK
        if topK > 0 && !ownTopK { llama_sampler_chain_add(chain, llama_sampler_init_top_k(Int32(topK))) }
        if parameters.topP < 1.0 { llama_sampler_chain_add(chain, llama_sampler_init_top_p(Float(parameters.topP), 1)) }
        if parameters.minP > 0 { llama_sampler_chain_add(chain, llama_sampler_init_min_p(Float(parameters.minP), 1)) }
        llama_sampler_chain_add(chain, llama_sampler_init_temp(Float(parameters.temperature)))
        llama_sampler_chain_add(chain, llama_sampler_init_dist(parameters.seed ?? UInt32.random(in: 0..<UInt32.max)))
        mode = ownTopK ? .topK(topK) : .fullChain
    }

    /// Top-k cuts up to this size are done here; larger ones by llama.cpp.
    static let largestOwnTopK = 256

    deinit {
        llama_sampler_free(chain)
        if let grammar { llama_sampler_free(grammar) }
    }

    /// Samples the next token from the logits at `index` of the last batch; nil when the grammar
    /// admits no token of the vocabulary.
    func sample(context: OpaquePointer, index: Int32) -> Int32? {
        guard let grammar else { return sampleFree(context: context, index: index) }
        let logits = UnsafeBufferPointer(start: llama_get_logits_ith(context, index), count: vocabularySize)
        let token: Int32
        if let first = choose(from: logits, constrained: false), allows(first, logit: logits[Int(first)], grammar: grammar) {
            token = first
        } else if let allowed = choose(from: logits, constrained: true) {
            token = allowed
        } else {
            return nil
        }
        if case .greedy = mode {} else { llama_sampler_accept(chain, token) }
        llama_sampler_accept(grammar, token)
        return token
    }

    /// Whether the grammar would let the output end here (`endToken`: an end-of-generation token).
    func grammarAllowsEnd(_ endToken: Int32) -> Bool {
        guard let grammar else { return false }
        return allows(endToken, logit: 0, grammar: grammar)
    }

    private func allows(_ token: Int32, logit: Float, grammar: UnsafeMutablePointer<llama_sampler>) -> Bool {
        var single = llama_token_data(id: token, logit: logit, p: 0)
        return withUnsafeMutablePointer(to: &single) { pointer in
            var array = llama_token_data_array(data: pointer, size: 1, selected: -1, sorted: false)
            llama_sampler_apply(grammar, &array)
            return pointer.pointee.logit != -Float.infinity
        }
    }

    /// The token the request's sampling picks, without accepting it; `constrained`: among the
    /// tokens the grammar allows only (nil when there are none).
    private func choose(from logits: UnsafeBufferPointer<Float>, constrained: Bool) -> Int32? {
        if constrained {
            constrain(logits)
            if candidates.isEmpty { return nil }
        }
        switch mode {
        case .greedy:
            return constrained ? candidates.first?.id : Self.argmax(logits)
        case .topK(let k):
            if constrained {
                if candidates.count > k { candidates.removeLast(candidates.count - k) }
            } else {
                selectTop(k, of: logits)
            }
            return applyChain(sorted: true)
        case .fullChain:
            if !constrained { fillCandidates(logits) }
            return applyChain(sorted: constrained)
        }
    }

    /// The tokens the grammar allows, in `candidates`, sorted by logit. With a top-k cut (or
    /// greedy), the grammar first sees only the `constrainedPool` most likely tokens: their best k
    /// allowed ones are the sample's candidates, and a JSON grammar nearly always allows some of
    /// them, where applying it to Gemma 3's 262,144 tokens takes tens of milliseconds. Only when
    /// it allows none of them does it see the whole vocabulary. A full chain sees it all.
    private func constrain(_ logits: UnsafeBufferPointer<Float>) {
        if case .fullChain = mode {} else {
            selectTop(Self.constrainedPool, of: logits)
            applyGrammar()
            if !candidates.isEmpty { return }
        }
        fillCandidates(logits)
        applyGrammar()
        candidates.sort { $0.logit > $1.logit }
    }

    /// Tokens whose grammar check the pool bounds.
    static let constrainedPool = 256

    private func fillCandidates(_ logits: UnsafeBufferPointer<Float>) {
        candidates.removeAll(keepingCapacity: true)
        candidates.reserveCapacity(vocabularySize)
        for token in 0..<logits.count { candidates.append(llama_token_data(id: Int32(token), logit: logits[token], p: 0)) }
    }

    /// Drops from `candidates` what the grammar does not allow, keeping their order.
    private func applyGrammar() {
        candidates.withUnsafeMutableBufferPointer { buffer in
            var array = llama_token_data_array(data: buffer.baseAddress, size: buffer.count, selected: -1, sorted: false)
            llama_sampler_apply(grammar, &array)
        }
        candidates.removeAll { $0.logit == -Float.infinity }
    }

    /// Runs the chain over `candidates` and returns the token it selects, without accepting it.
    private func applyChain(sorted: Bool) -> Int32 {
        candidates.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var array = llama_token_data_array(data: buffer.baseAddress, size: buffer.count, selected: -1, sorted: sorted)
            llama_sampler_apply(chain, &array)
            return array.selected >= 0 ? array.data[Int(array.selected)].id : array.data[0].id
        }
    }

    /// Sampling without a grammar: the path seeded requests were always reproduced on.
    private func sampleFree(context: OpaquePointer, index: Int32) -> Int32 {
        switch mode {
        case .fullChain:
            return llama_sampler_sample(chain, context, index)
        case .greedy:
            return Self.argmax(UnsafeBufferPointer(start: llama_get_logits_ith(context, index), count: vocabularySize))
        case .topK(let k):
            let logits = UnsafeBufferPointer(start: llama_get_logits_ith(context, index), count: vocabularySize)
            selectTop(k, of: logits)
            let token = candidates.withUnsafeMutableBufferPointer { buffer -> Int32 in
                var array = llama_token_data_array(data: buffer.baseAddress, size: buffer.count, selected: -1, sorted: true)
                llama_sampler_apply(chain, &array)
                return array.selected >= 0 ? array.data[Int(array.selected)].id : array.data[0].id
            }
            llama_sampler_accept(chain, token)
            return token
        }
    }

    /// The token with the largest logit (the first of equals).
    private static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        for token in 0..<logits.count where logits[token] > bestValue {
            bestValue = logits[token]
            best = token
        }
        return Int32(best)
    }

    /// The k largest logits, sorted descending, into `candidates`. One pass: a value enters only
    /// when it beats the smallest kept one, which is rare after the first few thousand tokens.
    private func selectTop(_ k: Int, of logits: UnsafeBufferPointer<Float>) {
        candidates.removeAll(keepingCapacity: true)
        var floor = -Float.infinity
        for token in 0..<logits.count {
            let value = logits[token]
            guard candidates.count < k || value > floor else { continue }
            // Insertion into a short descending array.
            var position = candidates.count
            while position > 0, candidates[position - 1].logit < value { position -= 1 }
            candidates.insert(llama_token_data(id: Int32(token), logit: value, p: 0), at: position)
            if candidates.count > k { candidates.removeLast() }
            if candidates.count == k { floor = candidates[k - 1].logit }
        }
    }
}
