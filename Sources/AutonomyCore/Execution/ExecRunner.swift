import Foundation
import Subprocess
import Synchronization

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// Runs `exec` handlers: an argv with no shell, the payload on stdin and in a private file, output
/// bounded, the whole process group stopped when time runs out.
public struct ExecRunner: HandlerRunner {
    public var maxOutputBytes: Int
    public var maxStderrBytes: Int
    /// Between SIGTERM and SIGKILL.
    public var killGrace: Interval
    /// The worker's own environment, read once: a handler gets only the minimal part of it
    /// (`HandlerEnvironment`), plus what its type passes or sets.
    private let inherited: [String: String]
    private let minimal: [String: String]

    /// - Parameter withheld: secret variables (the webhook's, the models' API keys) that reach a
    ///   handler only when its type names them in `pass_env`.
    public init(
        settings: WorkerSettings, environment: [String: String] = ProcessInfo.processInfo.environment,
        withheld: Set<String> = []
    ) {
        maxOutputBytes = settings.maxOutputBytes
        maxStderrBytes = settings.maxStderrBytes
        killGrace = settings.killGrace
        inherited = environment
        minimal = HandlerEnvironment.minimal(from: environment, withholding: withheld)
    }

    public func run(_ invocation: HandlerInvocation) async -> HandlerOutcome {
        let started = ContinuousClock.now
        func elapsed() -> Int64 { (ContinuousClock.now - started).inMilliseconds }
        guard case .exec(let handler) = invocation.type.handler else {
            return HandlerOutcome(status: .couldNotStart("not an exec handler"))
        }
        let payloadFile: PayloadFile
        do {
            payloadFile = try PayloadFile(taskID: invocation.task.id, payload: invocation.task.payload)
        } catch {
            return HandlerOutcome(
                status: .couldNotStart("cannot write the payload file: \(error)"), durationMs: elapsed())
        }
        defer { payloadFile.remove() }

        let name = handler.argv[0]
        guard
            let programPath = Self.locate(
                name, base: invocation.baseDirectory,
                searchPath: handler.env["PATH"] ?? inherited["PATH"])
        else {
            return HandlerOutcome(
                status: .couldNotStart("\(name): not found in PATH (give its full path in the handler's argv)"),
                durationMs: elapsed())
        }
        var variables = minimal
        for name in handler.passEnv { variables[name] = inherited[name] }
        variables.merge(invocation.environment) { _, new in new }
        variables.merge(handler.env) { _, new in new }
        variables["AUTONOMY_TASK_ID"] = String(invocation.task.id)
        variables["AUTONOMY_TASK_TYPE"] = invocation.task.type
        variables["AUTONOMY_ATTEMPT"] = String(invocation.attempt)
        variables["AUTONOMY_PAYLOAD_FILE"] = payloadFile.path
        let program = Program(
            name: name, path: programPath, arguments: Array(handler.argv.dropFirst()), environment: variables,
            workingDirectory: handler.cwd.map { ConfigLoader.absolute($0, base: invocation.baseDirectory) })
        let ran = await Self.run(
            program, stdinFile: payloadFile.path, timeout: invocation.timeout, grace: killGrace,
            limits: (stdout: maxOutputBytes, stderr: maxStderrBytes))
        return HandlerOutcome(
            status: ran.status, stdout: String(decoding: ran.captured.stdout, as: UTF8.self),
            stdoutTruncated: ran.captured.stdoutTruncated,
            stderrTail: String(decoding: ran.captured.stderrTail, as: UTF8.self), durationMs: elapsed())
    }

    /// A program to run: its resolved path, its arguments (never through a shell) and its whole
    /// environment.
    struct Program: Sendable {
        /// As configured (argv[0]), for messages.
        var name: String
        var path: String
        var arguments: [String]
        var environment: [String: String]
        var workingDirectory: String?
    }

    /// Runs `program` in its own process group with `stdinFile` on its standard input and its
    /// output cut to `limits`; at `timeout` the whole group gets SIGTERM, then SIGKILL after
    /// `grace`, and whatever the program left running in its group is killed when it ends. The one
    /// way autonomy starts a program: handlers, and the notify command.
    static func run(
        _ program: Program, stdinFile: String, timeout: Interval, grace: Interval, limits: (stdout: Int, stderr: Int)
    ) async -> (status: HandlerStatus, captured: Captured) {
        let environment = Environment.custom(
            Dictionary(
                uniqueKeysWithValues: program.environment.map {
                    (Environment.Key(stringLiteral: $0.key), $0.value)
                }))
        let options = {
            var options = PlatformOptions()
            options.processGroupID = 0  // its own group, so a timeout reaches everything it started
            options.teardownSequence = [
                .gracefulShutDown(toProcessGroup: true, allowedDurationToNextStep: grace.duration)
            ]
            return options
        }()
        let stdin: FileDescriptor
        do {
            stdin = try FileDescriptor.open(FilePath(stdinFile), .readOnly, options: [.closeOnExec])
        } catch {
            return (.couldNotStart("cannot open the payload file: \(error)"), Captured())
        }
        let control = RunControl()
        let collected: Result<(TerminationStatus, Captured), any Error> = await withTaskGroup(
            of: Result<(TerminationStatus, Captured), any Error>?.self
        ) { group in
            group.addTask {
                do {
                    let result = try await Subprocess.run(
                        .path(FilePath(program.path)), arguments: Arguments(program.arguments),
                        environment: environment, workingDirectory: program.workingDirectory.map { FilePath($0) },
                        platformOptions: options, input: .fileDescriptor(stdin, closeAfterSpawningProcess: true),
                        output: .sequence, error: .sequence
                    ) { execution in
                        control.processGroup.withLock { $0 = execution.processIdentifier.value }
                        return try await Captured.collect(
                            stdout: execution.standardOutput, stderr: execution.standardError, limits: limits)
                    }
                    return .success((result.terminationStatus, result.closureResult))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                // The timer: on time-out, TERM to the whole group, then KILL after the grace period.
                guard (try? await Task.sleep(for: timeout.duration)) != nil else { return nil }
                // Under load the process may have started before its id reached us: wait for it.
                var known = control.processGroup.withLock { $0 }
                while known == nil {
                    guard (try? await Task.sleep(for: .milliseconds(5))) != nil else { return nil }
                    known = control.processGroup.withLock { $0 }
                }
                guard let group = known else { return nil }
                control.timedOut.store(true, ordering: .sequentiallyConsistent)
                ProcessGroup.signal(group, SIGTERM)
                guard (try? await Task.sleep(for: grace.duration)) != nil else { return nil }
                ProcessGroup.signal(group, SIGKILL)
                return nil
            }
            var outcome: Result<(TerminationStatus, Captured), any Error> = .failure(CancellationError())
            while let next = await group.next() {
                if let result = next {
                    outcome = result
                    group.cancelAll()
                }
            }
            return outcome
        }
        if let group = control.processGroup.withLock({ $0 }) {
            // The run ends with its program: whatever it left running in its process group (after a
            // time-out, or a background child) is stopped, so nothing outlives it.
            ProcessGroup.signal(group, SIGKILL)
        }
        switch collected {
        case .failure(let error):
            if Task.isCancelled { return (.stopped, Captured()) }
            return (.couldNotStart(Self.describe(error, program: program.name)), Captured())
        case .success(let (termination, captured)):
            if control.timedOut.load(ordering: .sequentiallyConsistent) { return (.timedOut(timeout), captured) }
            if Task.isCancelled { return (.stopped, captured) }
            switch termination {
            case .exited(let code): return (.exited(code), captured)
            case .signaled(let signal): return (.signaled(signal), captured)
            }
        }
    }

    /// The program's path: a name with a `/` is taken from `base`; a bare name is looked up in
    /// `searchPath` here, once, rather than by trying to start it in every folder of PATH.
    static func locate(_ program: String, base: String, searchPath: String?) -> String? {
        if program.contains("/") { return ConfigLoader.absolute(program, base: base) }
        for folder in (searchPath ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") where !folder.isEmpty {
            let candidate = String(folder) + (folder.hasSuffix("/") ? "" : "/") + program
            if access(candidate, X_OK) == 0, !FileManager.default.directoryExists(atPath: candidate) {
                return ConfigLoader.absolute(candidate, base: base)
            }
        }
        return nil
    }

    private static func describe(_ error: any Error, program: String) -> String {
        if let subprocessError = error as? SubprocessError {
            let text = "\(subprocessError)"
            if text.contains("executableNotFound") || text.lowercased().contains("not found") {
                return "\(program): no such program (check the handler's argv and PATH)"
            }
            return text
        }
        return "\(error)"
    }
}

/// What a handler inherits from the worker: enough to run a program and to call `autonomy`, and
/// no secret it was not given.
public enum HandlerEnvironment {
    /// The variables every handler gets when the worker has them: the basics, and autonomy's own.
    public static let passed: Set<String> = [
        "PATH", "HOME", "LANG", "TZ", "AUTONOMY_CONFIG", "AUTONOMY_DATABASE", "AUTONOMY_LOG_LEVEL", "AUTONOMY_GATE",
    ]

    /// The `passed` variables the worker has, less the withheld ones.
    public static func minimal(from environment: [String: String], withholding withheld: Set<String>) -> [String:
        String]
    {
        var result = environment.filter { name, _ in passed.contains(name) && !withheld.contains(name) }
        if result["PATH"] == nil { result["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        return result
    }
}

extension Configuration {
    /// The environment variables that hold secrets: the webhook's signing secret and the models'
    /// API keys. Handlers get them only when their type names them in `pass_env`.
    public var secretVariableNames: Set<String> {
        Set([notify.webhook?.secretEnv].compactMap { $0 } + gateway.models.compactMap(\.apiKeyEnv))
    }
}

extension FileManager {
    func directoryExists(atPath path: String) -> Bool {
        var isFolder: ObjCBool = false
        return fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue
    }
}

/// A handler's process group, signalled safely after its leader may have been reaped.
enum ProcessGroup {
    /// Signals what is left of the group `id`. Once its leader is reaped, the id could in principle
    /// name another group (a recycled pid), so the group is signalled only while every member is in
    /// this worker's own session: what the handler left behind, never a stranger's processes.
    static func signal(_ id: pid_t, _ signal: Int32) {
        guard id > 1, kill(-id, 0) == 0 else { return }  // nothing left: the usual case, one syscall
        let session = getsid(0)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
        var members = 0
        for entry in entries where entry.first?.isNumber == true {
            guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // pid (comm) state ppid pgrp session ...: the name may hold anything, so read after ")".
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 3, let group = pid_t(fields[2]), group == id, let sid = pid_t(fields[3]) else {
                continue
            }
            guard sid == session else { return }  // not ours: leave it alone
            members += 1
        }
        if members > 0 { kill(-id, signal) }
    }
}

/// Shared between the handler's task and its timer.
private final class RunControl: Sendable {
    let processGroup = Mutex<pid_t?>(nil)
    let timedOut = Atomic<Bool>(false)
}

/// A handler's output, cut to size as it streams: the head of stdout, the tail of stderr.
struct Captured: Sendable {
    var stdout: [UInt8] = []
    var stdoutTruncated = false
    var stderrTail: [UInt8] = []

    static func collect(
        stdout: SubprocessOutputSequence, stderr: SubprocessOutputSequence, limits: (stdout: Int, stderr: Int)
    ) async throws -> Captured {
        async let head: ([UInt8], Bool) = {
            var bytes: [UInt8] = []
            var truncated = false
            for try await buffer in stdout {
                let room = limits.stdout - bytes.count
                buffer.withUnsafeBytes { raw in
                    if raw.count <= room {
                        bytes.append(contentsOf: raw)
                    } else {
                        bytes.append(contentsOf: raw.prefix(max(0, room)))
                        truncated = true
                    }
                }
            }
            return (bytes, truncated)
        }()
        async let tail: [UInt8] = {
            var bytes: [UInt8] = []
            for try await buffer in stderr {
                buffer.withUnsafeBytes { bytes.append(contentsOf: $0) }
                if bytes.count > limits.stderr * 2 { bytes.removeFirst(bytes.count - limits.stderr) }
            }
            return Array(bytes.suffix(limits.stderr))
        }()
        let (out, truncated) = try await head
        return Captured(stdout: out, stdoutTruncated: truncated, stderrTail: try await tail)
    }
}

/// The payload in a file only this user can read, removed when the attempt ends.
struct PayloadFile {
    let path: String

    init(taskID: Int64, payload: String) throws {
        var template = Array(
            (NSTemporaryDirectory() as NSString)
                .appendingPathComponent("autonomy-task-\(taskID)-XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let bytes = Array(payload.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                let code = errno
                unlink(path)
                throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
            }
            written += count
        }
    }

    func remove() { unlink(path) }
}
