import Foundation

/// A short program autonomy asks something of (`ssh-keygen`, `systemctl`), run to its end on the
/// calling thread by the runner handlers use: argv without a shell, input from a private file,
/// bounded output, and a time-out (TERM, then KILL) so that a stuck agent or bus never holds the
/// caller for good. Not Foundation's `Process`: started from several threads at once, it once
/// crashed inside `Process.run()` here (a SIGSEGV in the test run of 2026-11-27).
public enum Tool {
    public struct Result: Sendable, Equatable {
        public var status: HandlerStatus
        public var stdout: String
        public var stderr: String

        public var passed: Bool { status == .exited(0) }

        /// Its first line of output, or how it ended: for one `error:` line.
        public var detail: String {
            let text = (stderr + "\n" + stdout).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
            if !text.isEmpty, case .exited = status { return text }
            switch status {
            case .exited(let code): return "exit \(code)"
            case .signaled(let signal): return "killed by signal \(signal)"
            case .timedOut(let limit): return "no answer within \(limit)"
            case .couldNotStart(let reason), .workerUnfit(let reason): return reason
            case .stopped, .deferred: return "stopped"
            }
        }
    }

    /// Runs `path ARGUMENTS` with `input` on its stdin and this process's environment (ssh-keygen
    /// needs `SSH_AUTH_SOCK`). With `terminal`, it stays in this process's group, so it may ask the
    /// terminal for a passphrase; otherwise a group of its own is stopped whole at the time-out.
    public static func run(
        _ path: String, _ arguments: [String], input: [UInt8] = [], timeout: Interval, terminal: Bool = false,
        environment: [String: String] = ProcessEnvironment.variables
    ) -> Result {
        let inputFile: PayloadFile?
        do {
            inputFile = input.isEmpty ? nil : try PayloadFile(.tool, bytes: input)
        } catch {
            return Result(status: .couldNotStart("cannot write its input: \(error)"), stdout: "", stderr: "")
        }
        defer { inputFile?.remove() }
        let name = (path as NSString).lastPathComponent
        var child = ChildProcess(
            program: ExecRunner.Program(
                name: name, path: path, arguments: arguments, environment: environment, workingDirectory: nil),
            input: inputFile, timeout: timeout, grace: .seconds(2),
            limits: (stdout: 1 << 20, stderr: 16_384))
        child.ownGroup = !terminal
        let ran = child.runHere()
        if let group = ran.group { ProcessGroup.signal(group, SIGKILL) }
        return Result(
            status: ran.status, stdout: String(decoding: ran.captured.stdout, as: UTF8.self),
            stderr: Captured.text(ran.captured.stderrTail).trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
