import Testing

@testable import RbeeAPI

@Suite struct ProgressBroadcastTests {
    private func broadcast() -> ProgressBroadcast<Int> { ProgressBroadcast(initial: 0, isTerminal: { $0 >= 100 }) }

    @Test func subscribersSeeTheLatestStateFirstThenUpdates() async {
        let progress = broadcast()
        progress.publish(10)
        let first = progress.subscribe()
        let second = progress.subscribe()
        progress.publish(50)
        progress.publish(100)
        var seen: [[Int]] = []
        for stream in [first, second] {
            var values: [Int] = []
            for await value in stream { values.append(value) }
            seen.append(values)
        }
        #expect(seen == [[10, 50, 100], [10, 50, 100]])
    }

    @Test func aLateSubscriberGetsTheTerminalStateAndAnEndedStream() async {
        let progress = broadcast()
        progress.publish(100)
        progress.publish(7)  // ignored: the broadcast is over
        var values: [Int] = []
        for await value in progress.subscribe() { values.append(value) }
        #expect(values == [100])
        #expect(progress.isFinished)
    }
}
