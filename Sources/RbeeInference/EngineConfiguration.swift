import Foundation

/// How an `Engine` loads its model and schedules work.
public struct EngineConfiguration: Sendable {
    public var modelPath: String
    /// The name reported in events and `/health`; defaults to the file name without `.gguf`.
    public var modelName: String
    /// Slots decoded together (continuous batching); one llama.cpp sequence each.
    public var parallel = 4
    /// Context length of each slot in tokens; the llama.cpp context holds `parallel` of them.
    public var contextSize = 4096
    /// Most tokens one `llama_decode` call takes; long prompts are prefilled in chunks of this size.
    public var batchSize = 512
    public var threads = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// Requests waiting for a slot beyond which `submit` answers `ALL_SLOTS_BUSY` (0: none wait,
    /// a request is taken only while a slot is free).
    public var maxQueue = 64
    public var gpuLayers = 0
    /// Repacked CPU weights pick a different kernel by batch width, so a sequence's logits (and
    /// a seeded request's text) would change with what runs beside it. Off by default: output is
    /// then the same alone or under load. On trades that guarantee for faster prompt processing.
    public var repackWeights = false
    /// A Jinja chat template file that replaces the model's own (llama-server's
    /// `--chat-template-file`); one that does not parse fails the load.
    public var chatTemplateFile: String?
    /// Host RAM for slot states saved before their cells are overwritten (llama-server's
    /// `--cache-ram`); 0 turns it off.
    public var cacheRAMBytes = 2048 << 20
    public var loadingTimeout: Duration = .seconds(600)
    /// Interval of the keep-alive ticks put into every queued and running job's stream; nil for none.
    public var keepAliveInterval: Duration? = .seconds(10)

    public init(modelPath: String) {
        self.modelPath = modelPath
        let file = (modelPath as NSString).lastPathComponent
        self.modelName = file.hasSuffix(".gguf") ? String(file.dropLast(5)) : file
    }
}
