import Foundation
import RbeeAPI
import RbeeTestSupport
import Testing

@testable import RbeeInference


/// One engine on the real model for this suite.
enum SharedEngine {
    private static let engine: Engine = {
        var configuration = EngineConfiguration(modelPath: modelPath)
        configuration.parallel = 2
        configuration.contextSize = 512
        configuration.threads = 2
        let engine = Engine(configuration: configuration)
        engine.start()
        return engine
    }()

    static func get() async -> Engine {
        for await event in engine.loading.subscribe() where event.isTerminal { break }
        return engine
    }
}

/// Runs one request to its end and returns its token events and terminal event.
func generate(_ request: InferenceRequest, on engine: Engine) async throws -> (tokens: [String], terminal: InferenceEvent?) {
    let events = try await engine.submit(request, jobID: "job-" + UUID().uuidString.lowercased())
    var tokens: [String] = []
    var terminal: InferenceEvent?
    for await output in events {
        guard case .event(let event) = output else { continue }
        switch event {
        case .token(let text, _): tokens.append(text)
        case .end, .error: terminal = event
        case .started, .reasoning, .toolCall: break
        }
    }
    return (tokens, terminal)
}

@Suite(.serialized) struct EngineTests {
    @Test func multiByteTextArrivesAsWholeCharacters() async throws {
        let engine = await SharedEngine.get()
        var sampling = SamplingParameters()
        sampling.temperature = 0
        let request = InferenceRequest(prompt: .text("日本の首都は東京です。富士山は"), maxTokens: 24, sampling: sampling)
        let (tokens, terminal) = try await generate(request, on: engine)
        let text = tokens.joined()
        #expect(!text.contains("\u{FFFD}"), "a character was split: \(tokens)")
        #expect(text.unicodeScalars.contains { $0.value > 0x2E80 }, "expected CJK output, got \(text)")
        guard case .end(let stats)? = terminal else {
            Issue.record("no end event")
            return
        }
        #expect(stats.tokensOut == 24)
    }

    /// A large top-k (found by the API fuzzer: 19,455) samples at the usual speed; the engine's
    /// own one-pass cut took seconds a token for it, stalling every slot.
    @Test func aLargeTopKSamplesAtTheUsualSpeed() async throws {
        let engine = await SharedEngine.get()
        var sampling = SamplingParameters()
        sampling.temperature = 1
        sampling.topK = 20000
        sampling.minP = 0
        sampling.seed = 1
        let started = ContinuousClock.now
        let (tokens, terminal) = try await generate(
            InferenceRequest(prompt: .text("Once upon a time"), maxTokens: 8, sampling: sampling, ignoreEOS: true), on: engine)
        #expect(tokens.count >= 1 && terminal.map { if case .end = $0 { true } else { false } } == true)
        #expect(ContinuousClock.now - started < .seconds(10), "8 tokens took \(ContinuousClock.now - started)")
    }

    @Test func aStopSequenceSpanningTwoTokensIsMatchedAndNeverEmitted() async throws {
        let engine = await SharedEngine.get()
        var sampling = SamplingParameters()
        sampling.temperature = 0
        let prompt = PromptInput.text("The history of the bee begins")
        let free = try await generate(InferenceRequest(prompt: prompt, maxTokens: 40, sampling: sampling, ignoreEOS: true), on: engine)
        // A stop made of the end of one token and the start of the next.
        let pair = try #require(
            zip(free.tokens.indices, free.tokens.dropFirst()).first { index, next in
                free.tokens[index].count >= 2 && next.count >= 2 && index > 2
            })
        let stop = String(free.tokens[pair.0].suffix(2)) + String(pair.1.prefix(2))
        let full = free.tokens.joined()
        let match = try #require(full.range(of: stop))
        let expected = String(full[..<match.lowerBound])

        let stopped = try await generate(
            InferenceRequest(prompt: prompt, maxTokens: 40, sampling: sampling, stop: [stop], ignoreEOS: true), on: engine)
        #expect(stopped.tokens.joined() == expected)
        #expect(!stopped.tokens.joined().contains(stop))
        guard case .end(let stats)? = stopped.terminal else {
            Issue.record("no end event")
            return
        }
        #expect(stats.stopReason == .stopSequence)
    }

    @Test func aPromptLongerThanTheContextIsRefusedWithTheNumbers() async throws {
        let engine = await SharedEngine.get()
        let request = InferenceRequest(prompt: .text(String(repeating: "bee ", count: 800)), maxTokens: 4)
        do {
            _ = try await engine.submit(request, jobID: "too-long")
            Issue.record("a prompt over the context was accepted")
        } catch {
            #expect(error.code == .contextLengthExceeded)
            #expect(error.details["context_size"] == .number(512))
            #expect(error.message.contains("512"))
        }
    }

    @Test func cancellingAQueuedJobEndsItWithCancelled() async throws {
        let engine = await SharedEngine.get()
        var streams: [AsyncStream<EngineOutput>] = []
        for index in 0..<3 {
            streams.append(
                try await engine.submit(InferenceRequest(prompt: .text("Count:"), maxTokens: 2000, ignoreEOS: true), jobID: "c-\(index)"))
        }
        engine.cancel(jobID: "c-2")  // queued behind two slots
        engine.cancel(jobID: "c-0")
        engine.cancel(jobID: "c-1")
        for stream in streams {
            var last: InferenceEvent?
            for await output in stream { if case .event(let event) = output { last = event } }
            guard case .end(let stats)? = last else {
                Issue.record("expected end, got \(String(describing: last))")
                continue
            }
            #expect(stats.stopReason == .cancelled)
        }
        #expect(engine.snapshot().slotsBusy == 0)
    }
}
