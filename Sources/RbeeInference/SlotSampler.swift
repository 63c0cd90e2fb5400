internal import CLlama
import RbeeAPI

/// One request's llama.cpp sampler chain: repetition penalty, top-k, top-p, min-p, temperature,
/// then a seeded draw; greedy when the temperature is 0. Used only on the engine thread.
final class SlotSampler {
    private let chain: UnsafeMutablePointer<llama_sampler>

    init(_ parameters: SamplingParameters, vocabularySize: Int32) {
        chain = llama_sampler_chain_init(llama_sampler_chain_default_params())
        if parameters.repetitionPenalty != 1.0 {
            llama_sampler_chain_add(chain, llama_sampler_init_penalties(vocabularySize, 64, Float(parameters.repetitionPenalty), 0, 0))
        }
        if parameters.temperature <= 0 {
            llama_sampler_chain_add(chain, llama_sampler_init_greedy())
            return
        }
        if parameters.topK > 0 { llama_sampler_chain_add(chain, llama_sampler_init_top_k(Int32(parameters.topK))) }
        if parameters.topP < 1.0 { llama_sampler_chain_add(chain, llama_sampler_init_top_p(Float(parameters.topP), 1)) }
        if parameters.minP > 0 { llama_sampler_chain_add(chain, llama_sampler_init_min_p(Float(parameters.minP), 1)) }
        llama_sampler_chain_add(chain, llama_sampler_init_temp(Float(parameters.temperature)))
        llama_sampler_chain_add(chain, llama_sampler_init_dist(parameters.seed ?? UInt32.random(in: 0..<UInt32.max)))
    }

    deinit { llama_sampler_free(chain) }

    /// Samples (and accepts) the next token from the logits at `index` of the last batch.
    func sample(context: OpaquePointer, index: Int32) -> Int32 {
        llama_sampler_sample(chain, context, index)
    }
}
