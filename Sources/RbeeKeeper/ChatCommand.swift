import ArgumentParser
import Foundation
import RbeeAPI

#if canImport(Glibc)
import Glibc
#endif

/// `rbee chat`: an interactive conversation that keeps its history.
struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model; the conversation is kept until you leave with /bye.",
        discussion: """
            Each line you type is a user message; the reply streams back. Ctrl-C stops a reply; /bye (or
            end of input) leaves.
            Examples:
              rbee chat
              rbee chat -m SmolLM2-135M-Instruct.Q4_1 --temperature 0.3
              rbee chat --verbose --system "Answer in one sentence."
            """)

    @OptionGroup var queen: QueenOptions
    @OptionGroup var sampling: SamplingOptions
    @Option(help: "A system message to start the conversation with.") var system: String?
    @Flag(name: .customLong("no-start"), help: "Never start a queen; fail when none answers.") var noStart = false
    @Flag(help: "After each reply, a line with tokens, tokens/s, time to first token and prompt size.") var verbose = false

    func run() async throws {
        let status = StatusLine()
        let printer = TaskPrinter(connection: queen.connection, status: status)
        // Ctrl-C stops the reply under way; with none, it leaves (a queen this command started
        // ends with it: it runs with --exit-with-parent).
        let interrupts = Interrupts(whenIdle: { _exit(130) }, isRunning: { printer.isRunning })
        let system = self.system
        let sampling = self.sampling
        let verbose = self.verbose
        let interactive = isatty(STDIN_FILENO) == 1
        try await Session.run(queen.connection, autoStart: !noStart, model: sampling.resolvedModel, status: status) { _ in
            var lines = StandardInput.lines().makeAsyncIterator()
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            if interactive { status.write("chatting with \(sampling.resolvedModel); /bye to leave\n") }
            while true {
                if interactive { status.write(">>> ") }
                guard let line = await lines.next() else { break }
                let text = line.trimmingCharacters(in: .whitespaces)
                if text == "/bye" { break }
                if text.isEmpty { continue }
                messages.append(ChatMessage(role: "user", content: text))
                let outcome = try await printer.run(try sampling.request(.messages(messages)), cancelledBy: interrupts.events, showStats: verbose)
                interrupts.reset()
                messages.append(ChatMessage(role: "assistant", content: outcome.text))
            }
        }
    }
}
