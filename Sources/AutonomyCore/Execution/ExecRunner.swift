import Foundation
import Synchronization
import SystemShims

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
    /// Programs found in PATH, by name, folder and PATH: a draining worker looks each up once.
    /// Only what was found is kept, so a program installed later is found on its next attempt.
    private let located = LocatedPrograms()

    /// - Parameter withheld: secret variables (the webhook's, the models' API keys) that reach a
    ///   handler only when its type names them in `pass_env`.
    public init(
        settings: WorkerSettings, environment: [String: String] = ProcessEnvironment.variables,
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
        } catch let failure as PayloadFile.Failure where failure.folderUnusable {
            return HandlerOutcome(
                status: .workerUnfit("cannot write the payload file: \(failure)"), durationMs: elapsed())
        } catch {
            return HandlerOutcome(
                status: .couldNotStart("cannot write the payload file: \(error)"), durationMs: elapsed())
        }
        defer { payloadFile.remove() }

        let name = handler.argv[0]
        guard
            let programPath = located.path(
                of: name, base: invocation.baseDirectory, searchPath: handler.env["PATH"] ?? inherited["PATH"])
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
            program, input: payloadFile, timeout: invocation.timeout, grace: killGrace,
            limits: (stdout: maxOutputBytes, stderr: maxStderrBytes))
        return HandlerOutcome(
            status: ran.status, stdout: String(decoding: ran.captured.stdout, as: UTF8.self),
            stdoutTruncated: ran.captured.stdoutTruncated,
            stderrTail: Captured.text(ran.captured.stderrTail), stderrTruncated: ran.captured.stderrTruncated,
            durationMs: elapsed())
    }

    /// Why no handler's payload file can be made now (the temporary folder is missing, not a folder,
    /// or not writable), or nil: a worker checks before it starts anything.
    public static func payloadFolderProblem() -> String? {
        PayloadFile.folderProblem().map { "cannot write payload files: \($0)" }
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

    /// Runs `program` in its own process group with `input` on its standard input and its
    /// output cut to `limits`; at `timeout` the whole group gets SIGTERM, then SIGKILL after
    /// `grace`, and whatever the program left running in its group is killed when it ends. The one
    /// way autonomy starts a program: handlers, and the notify command.
    static func run(
        _ program: Program, input: PayloadFile, timeout: Interval, grace: Interval, limits: (stdout: Int, stderr: Int)
    ) async -> (status: HandlerStatus, captured: Captured) {
        let ran = await ChildProcess(
            program: program, input: input, timeout: timeout, grace: grace, limits: limits
        ).run()
        // The run ends with its program: whatever it left running in its process group (after a
        // time-out, or a background child) is stopped, so nothing outlives it.
        if let group = ran.group { ProcessGroup.signal(group, SIGKILL) }
        return (ran.status, ran.captured)
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
}

/// The paths `ExecRunner.locate` found, shared by the copies of one runner.
private final class LocatedPrograms: Sendable {
    private struct Key: Hashable {
        let name: String
        let base: String
        let searchPath: String?
    }
    private let paths = Mutex<[Key: String]>([:])

    func path(of name: String, base: String, searchPath: String?) -> String? {
        let key = Key(name: name, base: base, searchPath: searchPath)
        if let known = paths.withLock({ $0[key] }) { return known }
        guard let found = ExecRunner.locate(name, base: base, searchPath: searchPath) else { return nil }
        paths.withLock { $0[key] = found }
        return found
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
        // The database's password too (PostgreSQL): a handler never reaches the queue behind the worker's back.
        Set(
            [notify.webhook?.secretEnv, store.passwordEnv, "PGPASSWORD"].compactMap { $0 }
                + gateway.models.compactMap(\.apiKeyEnv))
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

/// A handler's output, cut to size as it streams: the head of stdout, the tail of stderr.
struct Captured: Sendable {
    var stdout: [UInt8] = []
    var stdoutTruncated = false
    var stderrTail: [UInt8] = []
    /// Bytes were dropped from the front of `stderrTail`.
    var stderrTruncated = false

    mutating func appendStdout(_ bytes: UnsafeRawBufferPointer, limit: Int) {
        let room = max(0, limit - stdout.count)
        if bytes.count > room { stdoutTruncated = true }
        stdout.append(contentsOf: bytes.prefix(room))
    }

    /// Keeps at most twice the limit while streaming, so a chatty handler costs bounded memory.
    mutating func appendStderr(_ bytes: UnsafeRawBufferPointer, limit: Int) {
        if bytes.count > limit { stderrTruncated = true }
        stderrTail.append(contentsOf: bytes.suffix(limit))
        if stderrTail.count > limit * 2 {
            stderrTail.removeFirst(stderrTail.count - limit)
            stderrTruncated = true
        }
    }

    /// The stderr tail as stored text (`stderr_tail`, and the error it explains): invalid UTF-8 and
    /// NUL bytes become U+FFFD, so every reader sees the same text (SQLite readers stop at a NUL,
    /// PostgreSQL refuses one). Stdout needs none: it is stored as JSON, where a NUL is escaped.
    static func text(_ bytes: [UInt8]) -> String {
        let decoded = String(decoding: bytes, as: UTF8.self)
        guard bytes.contains(0) else { return decoded }
        return String(String.UnicodeScalarView(decoded.unicodeScalars.map { $0 == "\0" ? "\u{FFFD}" : $0 }))
    }

    mutating func finish(stderrLimit: Int) {
        if stderrTail.count > stderrLimit {
            stderrTail.removeFirst(stderrTail.count - stderrLimit)
            stderrTruncated = true
        }
    }
}

/// The payload (or a tool's input) in a file only this user can read, removed when the attempt ends.
///
/// The file stays open and locked (`flock`) while it exists, and the program it is for gets that
/// very descriptor as its stdin, lock and all: a worker killed with SIGKILL cannot remove the
/// file, but once neither it nor its program holds it any more, the next worker that finds a dead
/// worker's task removes it (`removeAbandoned`). A payload may hold what nobody else should read
/// later, and `/tmp` is kept across restarts on many systems.
struct PayloadFile {
    let path: String
    /// Open (read and write, close-on-exec, above 0–2) and locked until `remove()`.
    let descriptor: Int32

    init(taskID: Int64, payload: String) throws {
        try self.init(.task(taskID), bytes: Array(payload.utf8))
    }

    /// What a file is for, which names it: `init` makes the name from it, and `isOurs` knows each
    /// name made here, so no kind of file is made that the sweep would not find.
    enum Kind {
        /// A task's payload (task 0: the notify command's body).
        case task(Int64)
        /// A tool's input (`Tool.run`).
        case tool
        /// A decision's signature, for `ssh-keygen -Y verify`.
        case decisionSignature

        /// Every kind's name starts with its stem and a dash: a payload's goes on with its task id.
        static let prefixes = [Kind.task(0), .tool, .decisionSignature].map { $0.stem + "-" }

        var stem: String {
            switch self {
            case .task: "autonomy-task"
            case .tool: "autonomy-tool"
            case .decisionSignature: "autonomy-decision-sig"
            }
        }

        var name: String {
            guard case .task(let id) = self else { return stem }
            return "\(stem)-\(id)"
        }
    }

    /// The temporary folder (`TMPDIR`, else `/tmp`), found once: a draining worker writes a file a task.
    private static let folder = NSTemporaryDirectory()
    /// The files this process has now, for an exit that cannot wait for their attempts (`removeLive`).
    private static let live = Mutex<Set<String>>([])

    /// `bytes` in a new file `NAME-XXXXXX` in the temporary folder, mode 0600, named for its `kind`.
    init(_ kind: Kind, bytes: [UInt8], in folder: String = folder) throws {
        var template = Array((folder as NSString).appendingPathComponent(kind.name + "-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { autonomy_mkstemp_cloexec($0.baseAddress!) }
        guard made >= 0 else { throw Failure(folder: folder, step: .make, code: errno) }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Above 0–2 (a worker started with a standard stream closed): it becomes a child's stdin.
        let descriptor = ChildProcess.aboveStandard(made)
        guard descriptor >= 0 else {
            let code = errno
            unlink(path)
            throw Failure(folder: folder, step: .make, code: code)
        }
        func fail(_ step: Failure.Step, _ code: Int32) -> Failure {
            unlink(path)
            close(descriptor)
            return Failure(folder: folder, step: step, code: code)
        }
        // Taken before the first byte is written: a file with bytes and no lock was left by a
        // process that ended (`removeAbandoned`). Another worker's sweep holds it a moment at most;
        // whoever holds it longer (a handler of the same user playing tricks) fails the attempt
        // rather than hanging the worker.
        var tries = 0
        while flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, tries < 200 else { throw fail(.lock, errno) }
            tries += 1
            usleep(1000)
        }
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw fail(.write, errno)
            }
            written += count
        }
        self.path = path
        self.descriptor = descriptor
        Self.live.withLock { _ = $0.insert(path) }
    }

    /// Why a file could not be made or written: the folder, the step and the system's reason.
    struct Failure: Error, CustomStringConvertible {
        enum Step { case make, lock, write }
        let folder: String
        let step: Step
        let code: Int32

        /// No file can be made in the folder at all, whatever it would hold (missing, read-only, not
        /// this user's, out of inodes or descriptors): the machine's fault, not a payload's. A write
        /// that fails (a payload too large for the space left) or a lock someone holds is not.
        var folderUnusable: Bool { step == .make }

        var description: String {
            let shown = folder.count > 1 && folder.hasSuffix("/") ? String(folder.dropLast()) : folder
            if step == .lock, code == EWOULDBLOCK { return "\(shown): another process held the new file's lock" }
            let reason = "\(shown): \(String(cString: strerror(code)))"
            guard [ENOENT, EACCES, EPERM, ENOTDIR, EROFS].contains(code) else { return reason }
            return reason + " (TMPDIR names the folder for payload files; it must exist and be writable)"
        }
    }

    /// Why no payload file can be made in the temporary folder now, checked without making one
    /// (`access(2)`: missing, not a folder, not writable, read-only), or nil.
    static func folderProblem(_ folder: String = folder) -> Failure? {
        access(folder, W_OK | X_OK) == 0 ? nil : Failure(folder: folder, step: .make, code: errno)
    }

    /// Removes the file, then lets its lock go. Once only: a second call (or one after
    /// `removeLive`) does nothing, so it never closes a descriptor number reused since.
    func remove() {
        guard Self.live.withLock({ $0.remove(path) }) != nil else { return }
        unlink(path)
        close(descriptor)
    }

    /// Removes the files of the attempts running now: for a process about to end at once (a second
    /// SIGTERM), whose attempts will not reach their own `remove()`. Process-wide: never in a test
    /// that shares its process with others.
    static func removeLive() {
        live.withLock { paths in
            for path in paths { unlink(path) }
            paths.removeAll()
        }
    }

    /// Removes, from the temporary folder, the files that processes which ended without removing
    /// them left (SIGKILL, a crash, a power cut): this user's own regular files that no live process
    /// has locked. An empty one may be a file whose maker has not locked it yet: it goes only when
    /// older than `minimumAge` seconds at `now` (seconds since 1970). Returns how many it removed.
    static func removeAbandoned(now: Int64, minimumAge: Int64 = 60, in folder: String = folder) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return 0 }
        let owner = geteuid()
        var removed = 0
        for name in names where isOurs(name) {
            let path = (folder as NSString).appendingPathComponent(name)
            var found = stat()
            guard lstat(path, &found) == 0, found.st_mode & S_IFMT == S_IFREG, found.st_uid == owner else { continue }
            let descriptor = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard descriptor >= 0 else { continue }
            defer { close(descriptor) }
            var locked = stat()
            // No live process holds it; it is still the file looked at, with one link (not a link
            // someone made to another file, nor a name already unlinked); its size is read under
            // the lock, as its maker writes only once it holds it.
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0, fstat(descriptor, &locked) == 0,
                locked.st_ino == found.st_ino, locked.st_dev == found.st_dev, locked.st_nlink == 1,
                locked.st_size > 0 || Int64(locked.st_mtim.tv_sec) <= now - minimumAge
            else { continue }
            if unlink(path) == 0 { removed += 1 }
        }
        return removed
    }

    /// A name `init` makes: a prefix, the task's id for a payload, and mkstemp's six letters or digits.
    static func isOurs(_ name: String) -> Bool {
        guard let prefix = Kind.prefixes.first(where: { name.hasPrefix($0) }) else { return false }
        var rest = Substring(name.dropFirst(prefix.count))
        if prefix == Kind.prefixes[0] {  // a payload's: the task id first
            let id = rest.prefix { $0.isASCII && $0.isNumber }
            guard !id.isEmpty, rest.dropFirst(id.count).first == "-" else { return false }
            rest = rest.dropFirst(id.count + 1)
        }
        return rest.count == 6 && rest.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
    }
}
