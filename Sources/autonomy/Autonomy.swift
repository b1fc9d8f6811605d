import ArgumentParser
import AutonomyCore
import Foundation

@main
struct Autonomy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autonomy",
        abstract: "A durable task queue with a firewall, a ledger and a single-shot worker for agents and bots.",
        discussion: prose(
            """
            Producers enqueue tasks; a systemd timer runs 'autonomy work-once --drain' every minute.

            Exit codes: 0 ok; 1 refused in the current state; 64 usage; 65 bad input; 66 not found; \
            69 unavailable (an alert channel, no model could answer, the gate cannot be reached); 70 internal \
            failure; 73 cannot write an output file; 74 database unusable; 75 database busy, or a producer's hourly \
            limit (try again later); 77 not permitted (an unsigned or wrongly signed decision, a producer asking for \
            a type it may not enqueue); 78 configuration error.
            """),
        version: AutonomyVersion.current,
        subcommands: [
            Demo.self, Enqueue.self, WorkOnce.self, Status.self, Tasks.self, Approvals.self, Approve.self, Reject.self,
            Verify.self, LedgerCommand.self, MapCommand.self, AuditCommand.self, HealCommand.self,
            OverridesCommand.self,
            Metrics.self,
            Prune.self, LLM.self,
            Budget.self,
            SourcesCommand.self, SubjectsCommand.self, SubjectCommand.self,
            Firewall.self, Notify.self, Gate.self, Serve.self, ProducerCommand.self, OperatorCommand.self,
            ConfigCommand.self, DoctorCommand.self, Export.self,
        ]
    )

    static func main() {
        AutonomyStore.configureSQLite()  // before any thread opens a database
        signal(SIGPIPE, SIG_IGN)  // a closed pipe is an error result, not a crash
        signal(SIGCHLD, SIG_DFL)  // inherited as ignored, the kernel would reap handlers before the worker learns how they ended
        do {
            // CommandLine.arguments repairs invalid UTF-8 (U+FFFD): a payload given with --payload
            // would be stored as other bytes than were sent. Refused, as a payload file's would be.
            for index in stride(from: 1, to: Int(CommandLine.argc), by: 1) {
                guard let argument = CommandLine.unsafeArgv[index], String(validatingCString: argument) == nil
                else { continue }
                throw CLIFailure(
                    "argument \(index) is not valid UTF-8: arguments (a payload, a name) must be UTF-8 text",
                    code: .badInput)
            }
            switch QuickCommandLine.read(Array(CommandLine.arguments.dropFirst())) {
            case .version:
                print(AutonomyVersion.current)
            case .command(let command):
                // The command is made here and run only there, on this thread.
                let handed = Handed(command)
                AutonomyStore.keepUntilExit()
                defer { closeKeptStores() }
                try runOnThisThread {
                    var command = handed.value
                    try await command.run()
                }
            case nil:
                var command = try parseAsRoot()
                guard let asyncCommand = command as? any AsyncParsableCommand else {
                    try command.run()
                    return
                }
                // As an `async` main would: the command on the shared pool, this thread parked.
                let handed = Handed(asyncCommand)
                Task {
                    do {
                        var command = handed.value
                        try await command.run()
                        Foundation.exit(0)
                    } catch {
                        exit(withFailure: error)
                    }
                }
                dispatchMain()
            }
        } catch {
            exit(withFailure: error)
        }
    }

    /// The parser's message as one line: its first, and the values it lists below it ("Please
    /// provide one of the following:" then "- queued", "- running"…) joined after it.
    static func oneLine(_ message: String) -> String {
        let lines = message.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard var first = lines.first?.replacingOccurrences(of: "Error: ", with: "") else { return "invalid arguments" }
        let listed = lines.dropFirst().prefix { $0.hasPrefix("- ") }.map { String($0.dropFirst(2)) }
        if first.hasSuffix(":"), !listed.isEmpty { first += " " + listed.joined(separator: ", ") }
        return first
    }

    /// Prints one `error:` line (help and version requests print as usual) and exits with the
    /// documented code.
    static func exit(withFailure error: any Error) -> Never {
        if let code = error as? ExitCode {  // a command that already said what it had to
            Foundation.exit(code.rawValue)
        }
        if error is CLIFailure || ExitCode.forCore(error) != nil {
            let (code, message) = failure(error)
            printError("error: \(message)")
            Foundation.exit(code.rawValue)
        }
        let code = exitCode(for: error)
        if code == .success || error is CleanExit {
            Self.exit(withError: error)
        }
        guard code == .validationFailure else {
            let (code, message) = failure(error)
            printError("error: \(message)")
            Foundation.exit(code.rawValue)
        }
        // Parsing and validation errors: one line, pointing at the help.
        printError("error: \(Self.oneLine(Self.message(for: error))) (see 'autonomy help')")
        Foundation.exit(ExitCode.usage.rawValue)
    }
}

/// The documented exit code and the one line a user reads for an error a command ran into.
func failure(_ error: any Error) -> (ExitCode, String) {
    if let failure = error as? CLIFailure { return (failure.code, failure.message) }
    if let code = ExitCode.forCore(error) { return (code, "\(error)") }
    // Not bad input: something in the machinery failed. Still one line, and its own code.
    let detail = "\(error)".split(separator: "\n").first.map(String.init) ?? "unknown failure"
    return (.internalError, "internal failure: \(detail) (please report it)")
}

/// Closes the stores a quick command kept open (`AutonomyStore.keepUntilExit`), saying on stderr
/// which could not be closed: their WAL is left for the next process.
func closeKeptStores() {
    for failure in AutonomyStore.closeKept() { printError("warning: \(failure)") }
}

/// A parsed command handed to the task that runs it: made on one thread, run only by that task.
private struct Handed: @unchecked Sendable {
    let value: any AsyncParsableCommand
    init(_ value: any AsyncParsableCommand) { self.value = value }
}

enum AutonomyVersion {
    static let current = "0.1.0"
}
