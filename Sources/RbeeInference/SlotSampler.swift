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
final class SlotSampler {
    private enum Mode {
        case greedy
        case topK(Int)
        case fullChain
    }

    private let chain: UnsafeMutablePointer<llama_sampler>
    private let mode: Mode
    private let vocabularySize: Int
    private var candidates: [llama_token_data] = []

    init(_ parameters: SamplingParameters, vocabularySize: Int32) {
        self.vocabularySize = Int(vocabularySize)
        chain = llama_sampler_chain_init(llama_sampler_chain_default_params())
        let penalised = parameters.repetitionPenalty != 1.0
        if penalised {
            llama_sampler_chain_add(chain, llama_sampler_init_penalties(vocabularySize, 64, Float(parameters.repetitionPenalty), 0, 0))
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

    deinit { llama_sampler_free(chain) }

    /// Samples the next token from the logits at `index` of the last batch.
    func sample(context: OpaquePointer, index: Int32) -> Int32 {
        switch mode {
        case .fullChain:
            return llama_sampler_sample(chain, context, index)
        case .greedy:
            let logits = UnsafeBufferPointer(start: llama_get_logits_ith(context, index), count: vocabularySize)
            var best = 0
            var bestValue = -Float.infinity
            for token in 0..<logits.count where logits[token] > bestValue {
                bestValue = logits[token]
                best = token
            }
            return Int32(best)
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
