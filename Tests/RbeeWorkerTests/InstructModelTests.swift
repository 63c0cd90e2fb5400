import AsyncHTTPClient
import Foundation
import NIOCore
import RbeeAPI
import RbeeTestSupport
import Testing

/// The instruction-tuned model answers a conversation and stops by itself on its end-of-turn
/// token, where the base model would go on to `max_tokens`.
/// Its own template adds a system prompt when none is given ("You are a helpful AI assistant named
/// SmolLM…"), under which this 135M model answers this question in French: the tests give a plain one,
/// as `scripts/demo.sh` does.
@Suite(.serialized) struct InstructModelTests {
    let systemMessage = #"{"role":"system","content":"You are a helpful assistant."}"#

    @Test func aConversationEndsByItselfWithAnAnswer() async throws {
        let worker = try await RunningWorker.start(model: instructModelPath)
        await worker.waitLoaded()
        let (health, healthBody) = try await get(worker.baseURL + "/health")
        #expect(health.status == .ok && String(decoding: healthBody, as: UTF8.self).contains("\"model\":\"\(instructModelID)\""))
        let (answer, body) = try await post(
            worker.baseURL + "/v1/inference",
            json: #"{"messages":[\#(systemMessage),{"role":"user","content":"What is the capital of France?"}],"max_tokens":64,"temperature":0,"stream":false}"#)
        #expect(answer.status == .ok, "\(String(decoding: body, as: UTF8.self))")
        let result = try decode(InferenceResult.self, body)
        #expect(result.stats.stopReason == .eos && result.stats.tokensOut < 64, "\(result.stats)")
        #expect(result.text.contains("Paris"), "\(result.text)")
        worker.service.shutdownSwitch.request()
        try await worker.task.value
    }
}
