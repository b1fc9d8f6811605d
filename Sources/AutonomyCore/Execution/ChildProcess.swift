import Foundation
import Synchronization
import SystemShims

/// One program started with `posix_spawn` and watched from one thread with `poll(2)` until it
/// exits: its output as it streams, its exit (a pidfd), its deadline and the worker's "stop".
///
/// The whole life of a handler is one thread and one `poll` loop: no event loop, no hops between
/// threads per read, which is what a child per task costs most (bench/peers: `true` per task).
struct ChildProcess {
    let program: ExecRunner.Program
    /// Its stdin: the file's own descriptor (its lock goes with it), read from the start; none is
    /// `/dev/null`.
    let input: PayloadFile?
    let timeout: Interval
    let grace: Interval
    let limits: (stdout: Int, stderr: Int)
    /// In a process group of its own (a handler: the whole group is stopped), or in the caller's
    /// (a tool that may ask the terminal for a passphrase: a background group would be stopped by
    /// the terminal when it reads); then only the program itself is signalled.
    var ownGroup = true

    /// Runs the program to its end on a thread of its own; cancelling the calling task stops it as
    /// a time-out does (TERM to its group, KILL after the grace), and the status is `stopped`.
    /// `group` is the process group it ran in (nil if it never started).
    func run() async -> (status: HandlerStatus, captured: Captured, group: pid_t?) {
        guard let stop = StopSignal() else {
            return (.couldNotStart("cannot make an eventfd: \(Self.describe(errno))"), Captured(), nil)
        }
        if WorkerThread.mayBlockHere {
            // A worker's own thread, in the one task it runs a handler in: nothing else needs the
            // thread meanwhile, so the program is watched right here.
            return await withTaskCancellationHandler {
                watch(stop)
            } onCancel: {
                stop.fire()
            }
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let started = WatcherThread.start { continuation.resume(returning: watch(stop)) }
                if let failure = started {
                    stop.close()
                    continuation.resume(
                        returning: (
                            .couldNotStart("cannot start a thread to watch it: \(Self.describe(failure))"), Captured(),
                            nil
                        ))
                }
            }
        } onCancel: {
            stop.fire()
        }
    }

    /// The process groups of the programs watched now (their leaders not yet reaped, so each id
    /// still names that group).
    private static let running = Mutex<Set<pid_t>>([])

    /// SIGKILL to every group watched now (a process about to end at once).
    static func killRunningGroups() {
        running.withLock { groups in for group in groups { kill(-group, SIGKILL) } }
    }

    /// Runs the program to its end on this thread: a short tool whose answer the caller waits for.
    func runHere() -> (status: HandlerStatus, captured: Captured, group: pid_t?) {
        guard let stop = StopSignal() else {
            return (.couldNotStart("cannot make an eventfd: \(Self.describe(errno))"), Captured(), nil)
        }
        return watch(stop)
    }

    /// Spawns and watches, blocking this thread.
    private func watch(_ stop: StopSignal) -> (status: HandlerStatus, captured: Captured, group: pid_t?) {
        defer { stop.close() }
        if stop.fired { return (.stopped, Captured(), nil) }
        if let folder = program.workingDirectory, !FileManager.default.directoryExists(atPath: folder) {
            return (.couldNotStart("\(program.name): no such working directory \(folder)"), Captured(), nil)
        }
        let standardInput: Int32
        if let input {
            // The descriptor the file was written through: from its start for the program.
            guard lseek(input.descriptor, 0, SEEK_SET) == 0 else {
                return (.couldNotStart("cannot read the payload file: \(Self.describe(errno))"), Captured(), nil)
            }
            standardInput = input.descriptor
        } else {
            standardInput = Self.aboveStandard(open("/dev/null", O_RDONLY | O_CLOEXEC))
            guard standardInput >= 0 else {
                return (.couldNotStart("cannot open /dev/null: \(Self.describe(errno))"), Captured(), nil)
            }
        }
        defer { if input == nil { Glibc.close(standardInput) } }
        guard let output = Pipe() else {
            return (.couldNotStart("cannot make a pipe: \(Self.describe(errno))"), Captured(), nil)
        }
        guard let errors = Pipe() else {
            let code = errno
            output.close()
            return (.couldNotStart("cannot make a pipe: \(Self.describe(code))"), Captured(), nil)
        }
        var reading = [output.read, errors.read]
        defer { for descriptor in reading where descriptor >= 0 { Glibc.close(descriptor) } }
        let spawned = spawn(input: standardInput, output: output.write, errors: errors.write)
        Glibc.close(output.write)
        Glibc.close(errors.write)
        let pid: pid_t
        switch spawned {
        case .failure(let failure): return (.couldNotStart(failure.reason), Captured(), nil)
        case .success(let id): pid = id
        }
        // From here the leader stays unreaped until the loop ends, so its group id cannot be reused:
        // signalling the group directly is safe.
        let target = ownGroup ? -pid : pid
        if ownGroup { Self.running.withLock { _ = $0.insert(pid) } }
        let exitSignal = autonomy_pidfd_open(pid)
        defer { if exitSignal >= 0 { Glibc.close(exitSignal) } }
        for descriptor in reading { _ = fcntl(descriptor, F_SETFL, O_NONBLOCK) }

        var captured = Captured()
        // One pipe's worth, uninitialised: read(2) fills what it returns.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 1)
        defer { buffer.deallocate() }
        let started = ContinuousClock.now
        var killAt: ContinuousClock.Instant?
        var timedOut = false
        var stopped = false
        var exited = false
        var pollFailure: Int32?
        while !exited {
            var descriptors = [
                pollfd(fd: reading[0], events: Int16(POLLIN), revents: 0),
                pollfd(fd: reading[1], events: Int16(POLLIN), revents: 0),
                pollfd(fd: exitSignal, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stopped || timedOut ? -1 : stop.descriptor, events: Int16(POLLIN), revents: 0),
            ]
            let now = ContinuousClock.now
            let next = killAt ?? (timedOut || stopped ? now + .seconds(3600) : started + timeout.duration)
            // Without a pidfd (a kernel before 5.3), the exit is looked for every 10 ms.
            let wait = exitSignal >= 0 ? Self.milliseconds(next - now) : min(10, Self.milliseconds(next - now))
            if poll(&descriptors, nfds_t(descriptors.count), wait) < 0, errno != EINTR {
                pollFailure = errno
                break
            }
            for index in 0..<2 where descriptors[index].revents != 0 {
                if !drain(reading[index], into: &captured, isStdout: index == 0, buffer: buffer) {
                    Glibc.close(reading[index])
                    reading[index] = -1
                }
            }
            exited = exitSignal >= 0 ? descriptors[2].revents != 0 : autonomy_has_exited(pid) != 0
            let after = ContinuousClock.now
            if !stopped, !timedOut {
                if descriptors[3].revents != 0 {
                    stopped = true
                } else if after >= started + timeout.duration {
                    timedOut = true
                }
                if stopped || timedOut {
                    kill(target, SIGTERM)
                    killAt = after + grace.duration
                }
            } else if let due = killAt, after >= due {
                kill(target, SIGKILL)
                killAt = nil
            }
        }
        // The run ends with its program: what it left in its group is killed now, while the
        // unreaped leader still holds the group's id (so the id cannot name anyone else's group).
        if ownGroup { kill(-pid, SIGKILL) }
        var status: Int32 = 0
        var reaped = waitpid(pid, &status, 0)
        while reaped < 0, errno == EINTR { reaped = waitpid(pid, &status, 0) }
        if ownGroup { Self.running.withLock { _ = $0.remove(pid) } }
        let waitFailure = reaped < 0 ? errno : 0
        // What it wrote just before it ended, up to a budget: a process that left the group may
        // still hold a pipe and keep writing.
        for index in 0..<2 where reading[index] >= 0 {
            _ = drain(reading[index], into: &captured, isStdout: index == 0, buffer: buffer, reads: 16)
        }
        captured.finish(stderrLimit: limits.stderr)
        let group = ownGroup ? pid : nil
        if let pollFailure {
            return (
                .couldNotStart("\(program.name) ran, but watching it failed: \(Self.describe(pollFailure))"), captured,
                group
            )
        }
        if timedOut { return (.timedOut(timeout), captured, group) }
        if stopped { return (.stopped, captured, group) }
        if waitFailure != 0 {
            // Only when the worker was started with SIGCHLD ignored (the kernel reaps for it).
            return (
                .couldNotStart("\(program.name) ran, but its exit status was lost: \(Self.describe(waitFailure))"),
                captured, group
            )
        }
        let signal = status & 0x7f
        return (signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal), captured, group)
    }

    /// Starts the program in a process group of its own (unless `ownGroup` is false), with the payload file on stdin, both pipes
    /// on stdout and stderr, every other descriptor closed, default signal dispositions and an empty
    /// signal mask; argv is passed as is, never through a shell.
    private func spawn(input: Int32, output: Int32, errors: Int32) -> Result<pid_t, SpawnFailure> {
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attributes)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
        }
        posix_spawn_file_actions_adddup2(&actions, input, 0)
        posix_spawn_file_actions_adddup2(&actions, output, 1)
        posix_spawn_file_actions_adddup2(&actions, errors, 2)
        autonomy_spawn_addclosefrom(&actions, 3)
        if let folder = program.workingDirectory { autonomy_spawn_addchdir(&actions, folder) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigfillset(&signals)  // what the worker ignores (SIGPIPE) is not ignored by the handler
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(
            &attributes, Int16((ownGroup ? POSIX_SPAWN_SETPGROUP : 0) | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        var arguments = CStrings([program.path] + program.arguments)
        var environment = CStrings(environment: program.environment)
        let code = arguments.withPointers { argv in
            environment.withPointers { envp in posix_spawn(&pid, program.path, &actions, &attributes, argv, envp) }
        }
        guard code == 0 else {
            if code == ENOENT {
                return .failure(SpawnFailure("\(program.name): no such program (check the handler's argv and PATH)"))
            }
            return .failure(SpawnFailure("\(program.name): cannot start: \(Self.describe(code))"))
        }
        return .success(pid)
    }

    /// Reads what is there now, at most `reads` times (so a handler that writes without pause
    /// never keeps the loop from its deadline); false at end of file (or an error): the
    /// descriptor is done.
    private func drain(
        _ descriptor: Int32, into captured: inout Captured, isStdout: Bool, buffer: UnsafeMutableRawBufferPointer,
        reads: Int = 4
    ) -> Bool {
        for _ in 0..<reads {
            let count = read(descriptor, buffer.baseAddress, buffer.count)
            if count > 0 {
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
                if isStdout {
                    captured.appendStdout(bytes, limit: limits.stdout)
                } else {
                    captured.appendStderr(bytes, limit: limits.stderr)
                }
                continue
            }
            if count < 0, errno == EINTR { continue }
            return count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        }
        return true
    }

    private struct SpawnFailure: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// A descriptor moved above 0–2, so that a worker started with a standard stream closed cannot
    /// have the child's stdin and stdout mixed up by the order of the dup2 calls.
    static func aboveStandard(_ descriptor: Int32) -> Int32 {
        guard descriptor >= 0, descriptor < 3 else { return descriptor }
        let moved = fcntl(descriptor, F_DUPFD_CLOEXEC, 3)
        Glibc.close(descriptor)
        return moved
    }

    /// A wait for poll(2), rounded up to the millisecond.
    static func milliseconds(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 0 }
        let total = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int32(clamping: total)
    }

    static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// The strings as a NULL-ended array of C strings, all in one buffer (an environment is some
    /// twenty `NAME=value`, made for every task).
    private struct CStrings {
        private var bytes: [UInt8] = []
        private var starts: [Int] = []

        init(_ texts: [String]) {
            bytes.reserveCapacity(256)
            for text in texts { add(text) }
        }

        init(environment: [String: String]) {
            bytes.reserveCapacity(2048)
            for (name, value) in environment { add(name, value) }
        }

        private mutating func add(_ text: String, _ value: String? = nil) {
            starts.append(bytes.count)
            append(text)
            if let value {
                bytes.append(UInt8(ascii: "="))
                append(value)
            }
            bytes.append(0)
        }

        private mutating func append(_ text: String) {
            var text = text
            text.withUTF8 { bytes.append(contentsOf: $0) }
        }

        mutating func withPointers<Result>(_ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> Result) -> Result {
            let starts = starts
            return bytes.withUnsafeMutableBufferPointer { buffer in
                buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { base in
                    var pointers: [UnsafeMutablePointer<CChar>?] = starts.map { base + $0 }
                    pointers.append(nil)
                    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
                }
            }
        }
    }

    /// A pipe whose ends close on exec; the child gets the write end as 1 or 2 through dup2.
    private struct Pipe {
        let read: Int32
        let write: Int32

        init?() {
            var ends: [Int32] = [-1, -1]
            guard autonomy_pipe_cloexec(&ends) == 0 else { return nil }
            read = ChildProcess.aboveStandard(ends[0])
            write = ChildProcess.aboveStandard(ends[1])
            guard read >= 0, write >= 0 else {
                close()
                return nil
            }
        }

        func close() {
            if read >= 0 { Glibc.close(read) }
            if write >= 0 { Glibc.close(write) }
        }
    }
}

/// The threads the runs' loops block on. A run takes a parked one, or starts one when none is
/// parked; when its run ends the thread parks for the next (a draining worker runs a child per task,
/// and starting a thread for each cost a clone, its stack's page faults and its exit every time).
/// A thread parked for `idleSeconds` with nothing to do ends. Unlike Foundation's `Thread.start()`,
/// which ignores a failed `pthread_create`, a thread that cannot start is an answer (errno), never a
/// run that waits forever.
private enum WatcherThread {
    /// How many threads may wait parked at once; a run beyond them starts a thread that ends after it.
    static let kept = 2
    static let idleSeconds = 10

    /// One thread's mailbox: the next run, and the semaphore it waits on for it.
    private final class Parked: @unchecked Sendable {
        /// Allocated, so its address stays put for the threads that wait on it.
        private let ready = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        /// Set by the giver before it posts, read by the thread after its wait: the semaphore orders them.
        private var next: (@Sendable () -> Void)?

        init() { sem_init(ready, 0, 0) }
        deinit {
            sem_destroy(ready)
            ready.deallocate()
        }

        func give(_ run: @escaping @Sendable () -> Void) {
            next = run
            sem_post(ready)
        }

        /// Waits for a run until `deadline`; nil when none came in time.
        func wait(until deadline: timespec) -> (@Sendable () -> Void)? {
            var deadline = deadline
            while sem_timedwait(ready, &deadline) != 0 {
                if errno != EINTR { return nil }
            }
            defer { next = nil }
            return next
        }

        /// Waits for the run a giver has already taken this thread for.
        func waitForGiven() -> @Sendable () -> Void {
            while sem_wait(ready) != 0 {}
            defer { next = nil }
            return next!
        }
    }

    private static let parked = Mutex<[Parked]>([])

    static func start(_ run: @escaping @Sendable () -> Void) -> Int32? {
        if let waiting = parked.withLock({ $0.popLast() }) {
            waiting.give(run)
            return nil
        }
        let mailbox = Parked()
        mailbox.give(run)
        return DetachedThread.start { serve(mailbox) }
    }

    /// A thread's life: its first run, then the next ones given while it is parked.
    private static func serve(_ mailbox: Parked) {
        var run = mailbox.waitForGiven()
        while true {
            run()
            // What the run held (its program, its continuation) is not kept while parked.
            run = {}
            guard
                parked.withLock({ list in
                    guard list.count < kept else { return false }
                    list.append(mailbox)
                    return true
                })
            else { return }
            var deadline = timespec()
            clock_gettime(CLOCK_REALTIME, &deadline)
            deadline.tv_sec += idleSeconds
            if let given = mailbox.wait(until: deadline) {
                run = given
                continue
            }
            // Timed out: leave, unless a run took this thread between the time-out and now.
            let left = parked.withLock { list in
                guard let index = list.firstIndex(where: { $0 === mailbox }) else { return false }
                list.remove(at: index)
                return true
            }
            if left { return }
            run = mailbox.waitForGiven()
        }
    }
}

/// A detached thread running `body`: the errno when it cannot start.
///
/// The thread does not block SIGCHLD, whatever the thread that started it blocks (the shared pool's
/// threads block nearly every signal, and a new thread inherits that mask). The kernel drops a
/// child's SIGCHLD at once when the disposition is the default and the thread that started the child
/// does not block it; blocked there, the signal was queued for the process instead and woke the
/// main thread, which does nothing with it, once for every handler a draining worker ran.
enum DetachedThread {
    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    static func start(_ body: @escaping @Sendable () -> Void) -> Int32? {
        let context = Unmanaged.passRetained(Body(body)).toOpaque()
        var thread = pthread_t()
        let code = pthread_create(
            &thread, nil,
            { context in
                var childSignal = sigset_t()
                sigemptyset(&childSignal)
                sigaddset(&childSignal, SIGCHLD)
                pthread_sigmask(SIG_UNBLOCK, &childSignal, nil)
                Unmanaged<Body>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
        guard code == 0 else {
            Unmanaged<Body>.fromOpaque(context).release()
            return code
        }
        pthread_detach(thread)
        return nil
    }
}

/// The worker's "stop" reaching the watching thread: an eventfd its poll loop waits on.
private final class StopSignal: Sendable {
    let descriptor: Int32
    /// Held while writing, so a late "stop" never writes to a descriptor number reused after close.
    private let open = Mutex(true)

    init?() {
        descriptor = autonomy_eventfd()
        guard descriptor >= 0 else { return nil }
    }

    /// Safe from any thread, any number of times, also before the loop starts.
    func fire() {
        open.withLock { isOpen in
            guard isOpen else { return }
            var one: UInt64 = 1
            _ = withUnsafeBytes(of: &one) { write(descriptor, $0.baseAddress, 8) }
        }
    }

    var fired: Bool {
        var descriptors = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
        return poll(&descriptors, 1, 0) > 0
    }

    func close() {
        open.withLock { isOpen in
            isOpen = false
            Glibc.close(descriptor)
        }
    }
}
