import AsyncHTTPClient
import Foundation
import RbeeAPI
import RbeeTestSupport
import Testing

/// Acceptance 1–4 of the worker issue, on the shared 4-slot worker and the real model.
@Suite(.serialized) struct WorkerStreamingTests {
    /// A generation that runs until cancelled.
    static let long = inferenceJSON("Count slowly:", maxTokens: 4000, extra: #""ignore_eos":true,"temperature":0"#)

    /// Opens a stream and reads until its first token, so it is known to hold a slot.
    func openRunning(_ worker: RunningWorker, jobID: String) async throws -> EventStreamClient {
        var stream = try await EventStreamClient.open(
            worker.baseURL + "/v1/inference", json: inferenceJSON("Count slowly:", maxTokens: 4000, extra: #""ignore_eos":true,"temperature":0,"job_id":"\#(jobID)""#))
        while let message = try await stream.next() {
            if case .token? = message.event { return stream }
        }
        Issue.record("stream \(jobID) ended before its first token")
        return stream
    }

    @Test func aRequestBehindBusySlotsGetsHeadersAtOnceAndStreamsLive() async throws {
        let worker = try await SharedWorker.get()
        var busy: [EventStreamClient] = []
        for index in 0..<4 { busy.append(try await openRunning(worker, jobID: "busy-\(index)")) }
        #expect(try await health(worker).slotsBusy == 4)

        var late = try await EventStreamClient.open(
            worker.baseURL + "/v1/inference", json: inferenceJSON("Once upon a time", maxTokens: 40, extra: #""ignore_eos":true"#))
        #expect(late.response.status == .ok)
        #expect(late.response.headers["content-type"].first == "text/event-stream")
        let headerDelay = late.headersAt - late.sentAt
        #expect(headerDelay < .milliseconds(100), "headers took \(headerDelay) with every slot busy")
        // Queued behind busy slots it is silent but for keep-alives (every 200 ms here).
        let first = try #require(try await late.next())
        #expect(first.message == .comment("keep-alive"))
        #expect(first.at - late.sentAt < .milliseconds(400))

        for index in 0..<4 {
            #expect(try await delete(worker.baseURL + "/v1/inference/busy-\(index)").status == .noContent)
        }
        for index in busy.indices {
            let transcript = try await busy[index].collect()
            #expect(transcript.endsProperly)
            #expect(transcript.stats?.stopReason == .cancelled)
        }

        let transcript = try await late.collect()
        #expect(transcript.endsProperly)
        #expect(transcript.events.first.map { if case .started = $0 { true } else { false } } == true)
        let stats = try #require(transcript.stats)
        #expect(stats.tokensOut == 40)
        // Live, not buffered: the client saw tokens spread over most of the decode time.
        let spread = try #require(transcript.tokens.last?.at) - (try #require(transcript.tokens.first?.at))
        #expect(stats.decodeMs > 100)
        #expect(spread.milliseconds > 0.6 * stats.decodeMs, "tokens arrived within \(spread) of a \(stats.decodeMs) ms decode")
    }

    @Test func streamsEndWithOneTerminalEventAndDone() async throws {
        let worker = try await SharedWorker.get()
        // max_tokens
        var stream = try await EventStreamClient.open(worker.baseURL + "/v1/inference", json: inferenceJSON("The sky is", maxTokens: 5))
        var transcript = try await stream.collect()
        #expect(transcript.endsProperly)
        #expect(transcript.stats?.stopReason == .maxTokens)
        #expect(transcript.stats?.tokensOut == 5)

        // A stop sequence taken from the greedy output itself, so it is sure to occur.
        let greedy = inferenceJSON("The capital of France is", maxTokens: 24, extra: #""temperature":0,"cache_prompt":false"#)
        stream = try await EventStreamClient.open(worker.baseURL + "/v1/inference", json: greedy)
        let full = try await stream.collect().text
        let words = full.split(separator: " ")
        try #require(words.count > 4)
        let stop = String(words[3])
        let prefix = String(full[..<full.range(of: stop)!.lowerBound])
        let stopJSON = String(decoding: try JSONEncoder().encode([stop]), as: UTF8.self)
        stream = try await EventStreamClient.open(
            worker.baseURL + "/v1/inference",
            json: inferenceJSON("The capital of France is", maxTokens: 24, extra: #""temperature":0,"cache_prompt":false,"stop":\#(stopJSON)"#))
        transcript = try await stream.collect()
        #expect(transcript.endsProperly)
        #expect(transcript.stats?.stopReason == .stopSequence)
        #expect(transcript.text == prefix)
        #expect(!transcript.text.contains(stop))
    }

    @Test func invalidRequestsListEveryFieldError() async throws {
        let worker = try await SharedWorker.get()
        let (response, body) = try await post(
            worker.baseURL + "/v1/inference", json: #"{"prompt":"hi","max_tokens":0,"temperature":9,"stop":[1]}"#,
            headers: [("X-Correlation-Id", "test-corr-1")])
        #expect(response.status == .badRequest)
        #expect(response.headers["x-correlation-id"].first == "test-corr-1")
        let envelope = try decode(ErrorEnvelope.self, body)
        #expect(envelope.error.code == "INVALID_REQUEST")
        #expect(envelope.correlationID == "test-corr-1")
        #expect(envelope.error.fieldErrors.map(\.field) == ["max_tokens", "temperature", "stop"])

        let (badJSON, _) = try await post(worker.baseURL + "/v1/inference", json: "{not json")
        #expect(badJSON.status == .badRequest)
        let huge = inferenceJSON(String(repeating: "a", count: Validation.maxBodyBytes + 1), maxTokens: 1)
        let (tooLarge, tooLargeBody) = try await post(worker.baseURL + "/v1/inference", json: huge)
        #expect(tooLarge.status.code == 413)
        #expect(try decode(ErrorEnvelope.self, tooLargeBody).error.code == "INVALID_REQUEST")

        let longPrompt = inferenceJSON(String(repeating: "word ", count: 1500), maxTokens: 4)
        let (tooLong, tooLongBody) = try await post(worker.baseURL + "/v1/inference", json: longPrompt)
        #expect(tooLong.status == .badRequest)
        let error = try decode(ErrorEnvelope.self, tooLongBody).error
        #expect(error.code == "CONTEXT_LENGTH_EXCEEDED")
        #expect(error.details["context_size"] == .number(1024))
    }

    @Test func aClientDisconnectFreesTheSlotWithinOneSecond() async throws {
        let worker = try await SharedWorker.get()
        let reader = Task {
            var stream = try await openRunning(worker, jobID: "disconnect-1")
            while try await stream.next() != nil {}
        }
        #expect(try await waitFor(timeout: .seconds(30)) { try await health(worker).slotsBusy == 1 } != nil)
        reader.cancel()
        let freed = try await waitFor(timeout: .seconds(3)) { try await health(worker).slotsBusy == 0 }
        let took = try #require(freed, "the slot was still busy 3 s after the client left")
        #expect(took < .seconds(1))
    }

    @Test func aSeededRequestGivesTheSameTextAloneAndBesideOthers() async throws {
        let worker = try await SharedWorker.get()
        // Without prompt reuse: the same text alone and under load is the guarantee of a request
        // prefilled from its first token.
        let seeded = inferenceJSON(
            "Write a short poem about bees:", maxTokens: 32, extra: #""temperature":0.9,"seed":1234,"ignore_eos":true,"cache_prompt":false"#)
        var alone = try await EventStreamClient.open(worker.baseURL + "/v1/inference", json: seeded)
        let aloneText = try await alone.collect().text
        #expect(!aloneText.isEmpty)

        // Started together with 3 others: all four prompts arrive in the same scheduling step.
        let others = (0..<3).map { inferenceJSON("Story number \($0):", maxTokens: 48, extra: #""temperature":1.0,"ignore_eos":true"#) }
        let texts = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (index, json) in ([seeded] + others).enumerated() {
                group.addTask {
                    var stream = try await EventStreamClient.open(worker.baseURL + "/v1/inference", json: json)
                    return (index, try await stream.collect().text)
                }
            }
            var results: [Int: String] = [:]
            for try await (index, text) in group { results[index] = text }
            return results
        }
        #expect(texts[0] == aloneText)

        // Arriving while 3 longer generations are already decoding.
        var running: [EventStreamClient] = []
        for index in 0..<3 {
            var stream = try await EventStreamClient.open(
                worker.baseURL + "/v1/inference",
                json: inferenceJSON(String(repeating: "A longer context for stream \(index). ", count: 12), maxTokens: 80, extra: #""ignore_eos":true"#))
            while let message = try await stream.next() { if case .token? = message.event { break } }
            running.append(stream)
        }
        var beside = try await EventStreamClient.open(worker.baseURL + "/v1/inference", json: seeded)
        #expect(try await beside.collect().text == aloneText)
        for index in running.indices { #expect(try await running[index].collect().endsProperly) }
    }

    @Test func eightConcurrentStreamsOnFourSlotsAllComplete() async throws {
        let worker = try await SharedWorker.get()
        let transcripts = try await withThrowingTaskGroup(of: StreamTranscript.self) { group in
            for index in 0..<8 {
                group.addTask {
                    var stream = try await EventStreamClient.open(
                        worker.baseURL + "/v1/inference", json: inferenceJSON("Item \(index):", maxTokens: 16, extra: #""ignore_eos":true"#))
                    return try await stream.collect()
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(transcripts.count == 8)
        for transcript in transcripts {
            #expect(transcript.endsProperly)
            #expect(transcript.stats?.tokensOut == 16)
            #expect(transcript.tokens.count > 0)
        }
    }

    @Test func theRequestBeyondTheQueueBoundGets503WithRetryAfter() async throws {
        let worker = try await SharedWorker.get()
        var running: [EventStreamClient] = []
        for index in 0..<4 { running.append(try await openRunning(worker, jobID: "bound-run-\(index)")) }
        var queued: [EventStreamClient] = []
        for index in 0..<64 {
            queued.append(
                try await EventStreamClient.open(
                    worker.baseURL + "/v1/inference", json: inferenceJSON("q", maxTokens: 4, extra: #""job_id":"bound-q-\#(index)""#)))
        }
        #expect(try await health(worker).queueDepth == 64)
        let (refused, body) = try await post(worker.baseURL + "/v1/inference", json: inferenceJSON("one too many", maxTokens: 4))
        #expect(refused.status == .serviceUnavailable)
        #expect(refused.headers["retry-after"].first != nil)
        #expect(try decode(ErrorEnvelope.self, body).error.code == "ALL_SLOTS_BUSY")

        for index in 0..<64 { _ = try await delete(worker.baseURL + "/v1/inference/bound-q-\(index)") }
        for index in 0..<4 { _ = try await delete(worker.baseURL + "/v1/inference/bound-run-\(index)") }
        for index in queued.indices {
            let transcript = try await queued[index].collect()
            #expect(transcript.endsProperly)
            #expect(transcript.stats?.stopReason == .cancelled)
        }
        for index in running.indices { #expect(try await running[index].collect().endsProperly) }
        // DELETE is idempotent, also for jobs long gone.
        #expect(try await delete(worker.baseURL + "/v1/inference/bound-q-0").status == .noContent)
    }

    @Test func aRequestDeadlineEndsTheRequestBeforeOrDuringTheStream() async throws {
        let worker = try await SharedWorker.get()
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let past = formatter.string(from: Date().addingTimeInterval(-1))
        let (late, body) = try await post(
            worker.baseURL + "/v1/inference", json: inferenceJSON("hi", maxTokens: 4), headers: [("X-Request-Deadline", past)])
        #expect(late.status == .requestTimeout)
        #expect(try decode(ErrorEnvelope.self, body).error.code == "DEADLINE_EXCEEDED")

        let soon = formatter.string(from: Date().addingTimeInterval(0.5))
        var stream = try await EventStreamClient.open(
            worker.baseURL + "/v1/inference", json: inferenceJSON("Count:", maxTokens: 4000, extra: #""ignore_eos":true"#),
            headers: [("X-Request-Deadline", soon)])
        let transcript = try await stream.collect()
        #expect(transcript.endsProperly)
        #expect(transcript.tokens.count > 0)
        guard case .error(let error)? = transcript.terminal else {
            Issue.record("expected DEADLINE_EXCEEDED, got \(String(describing: transcript.terminal))")
            return
        }
        #expect(error.code == .deadlineExceeded)
        #expect(try await waitFor(timeout: .seconds(1)) { try await health(worker).slotsBusy == 0 } != nil)
    }

    /// Two requests with the same `job_id` at once: the check and the enqueueing are one step, so
    /// exactly one is refused with 409 `JOB_EXISTS` and the other streams to its end.
    @Test func twoRequestsWithOneJobIDAtOnceGetExactlyOneConflict() async throws {
        let worker = try await SharedWorker.get()
        let body = inferenceJSON("Once upon a time", maxTokens: 16, extra: #""job_id":"twin-job","ignore_eos":true"#)
        let answers = try await withThrowingTaskGroup(of: (UInt, Data).self) { group in
            for _ in 0..<2 {
                group.addTask {
                    let (response, data) = try await post(worker.baseURL + "/v1/inference", json: body)
                    return (response.status.code, data)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.map(\.0).sorted() == [200, 409], "\(answers.map { ($0.0, String(decoding: $0.1, as: UTF8.self)) })")
        let refused = try #require(answers.first { $0.0 == 409 })
        #expect(try decode(ErrorEnvelope.self, refused.1).error.code == .jobExists)
        let streamed = try #require(answers.first { $0.0 == 200 })
        #expect(String(decoding: streamed.1, as: UTF8.self).hasSuffix("data: [DONE]\n\n"))
        #expect(String(decoding: streamed.1, as: UTF8.self).contains(#""tokens_out":16"#))
    }

    /// Also: `messages` on a model with no chat template in its file (this Gemma) are rendered with
    /// llama.cpp's built-in template for its architecture.
    @Test func streamFalseReturnsOneDocument() async throws {
        let worker = try await SharedWorker.get()
        let (response, body) = try await post(
            worker.baseURL + "/v1/inference",
            json: #"{"messages":[{"role":"user","content":"Name a colour."}],"max_tokens":8,"stream":false,"temperature":0}"#)
        #expect(response.status == .ok)
        let result = try decode(InferenceResult.self, body)
        #expect(result.stats.tokensOut > 0)
        #expect(!result.text.isEmpty)
        #expect(result.stats.promptTokens > 5)
    }

    @Test func healthReadyAndMetricsDescribeTheWorker() async throws {
        let worker = try await SharedWorker.get()
        let status = try await health(worker)
        #expect(status.state == .ready)
        #expect(status.slotsTotal == 4)
        #expect(status.apiVersion == RbeeVersion.apiVersion)
        #expect(status.memoryBytes > 100_000_000)
        let ready = try decode(WorkerReadiness.self, try await get(worker.baseURL + "/v1/ready").1)
        #expect(ready.ready)
        let metrics = String(decoding: try await get(worker.baseURL + "/metrics").1, as: UTF8.self)
        #expect(metrics.contains(#"rbee_worker_requests_total{outcome="completed"}"#))
        #expect(metrics.contains("rbee_worker_time_to_first_token_seconds_bucket"))
        #expect(metrics.contains("rbee_worker_inter_token_latency_seconds_bucket"))
        #expect(metrics.contains("rbee_worker_slots_total 4"))
        #expect(prometheusProblems(metrics).isEmpty, "\(prometheusProblems(metrics))")
        let (missing, _) = try await get(worker.baseURL + "/v1/nope")
        #expect(missing.status == .notFound)
        let after = String(decoding: try await get(worker.baseURL + "/metrics").1, as: UTF8.self)
        #expect(after.contains(#"rbee_worker_errors_total{code="NOT_FOUND"}"#), "\(after)")
    }
}
