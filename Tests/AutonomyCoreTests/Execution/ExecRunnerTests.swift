import AutonomyTestSupport
import Foundation
import Testing

@testable import AutonomyCore

@Suite struct ExecRunnerTests {
    private func invocation(
        _ argv: [String], payload: String = #"{"to":"a@b.c; rm -rf /"}"#, timeout: Interval = .seconds(30),
        cwd: String? = nil, env: [String: String] = [:], base: String = "/"
    ) -> HandlerInvocation {
        let task = TaskRecord(
            id: 7, type: "t", state: .running, priority: 0, runAt: 0, payload: payload,
            payloadSHA256: payload.sha256Hex,
            idempotencyKey: nil, source: nil, subject: nil, attempts: 2, maxAttempts: nil, leaseToken: nil,
            leaseExpiresAt: nil, createdAt: 0, updatedAt: 0, startedAt: nil, finishedAt: nil, exitCode: nil,
            result: nil, lastError: nil, stderrTail: nil)
        return HandlerInvocation(
            task: task, type: TaskType(name: "t", handler: .exec(ExecHandler(argv: argv, cwd: cwd, env: env))),
            attempt: 2, timeout: timeout, baseDirectory: base, environment: ["AUTONOMY_DATABASE": "/x.db"])
    }

    private func runner(maxOutput: Int = 64 * 1024, maxStderr: Int = 8 * 1024, grace: Interval = .seconds(2))
        -> ExecRunner
    {
        var settings = WorkerSettings()
        settings.maxOutputBytes = maxOutput
        settings.maxStderrBytes = maxStderr
        settings.killGrace = grace
        return ExecRunner(settings: settings)
    }

    @Test func thePayloadArrivesOnStdinAndInAFileNeverInArgv() async throws {
        let script = """
            stdin=$(cat)
            file=$(cat "$AUTONOMY_PAYLOAD_FILE")
            printf '{"stdin":%s,"file":%s,"id":"%s","type":"%s","attempt":"%s","db":"%s","extra":"%s","args":"%s"}' \
              "$stdin" "$file" "$AUTONOMY_TASK_ID" "$AUTONOMY_TASK_TYPE" "$AUTONOMY_ATTEMPT" "$AUTONOMY_DATABASE" "$EXTRA" "$*"
            """
        let outcome = await runner().run(
            invocation(["/bin/sh", "-c", script, "sh", "fixed-arg"], env: ["EXTRA": "yes"]))
        #expect(outcome.status == .exited(0))
        let result = try JSONValue.parse(try #require(outcome.resultJSON))
        let payload: JSONValue = ["to": "a@b.c; rm -rf /"]
        #expect(result[path: "stdin"] == payload)
        #expect(result[path: "file"] == payload)
        #expect(result[path: "id"] == "7" && result[path: "type"] == "t" && result[path: "attempt"] == "2")
        #expect(result[path: "db"] == "/x.db" && result[path: "extra"] == "yes")
        #expect(result[path: "args"] == "fixed-arg")
    }

    /// argv and the environment reach the program byte for byte, each string whole, in order:
    /// empty arguments, an `=` inside a value, an empty value, text beyond ASCII, and many of them.
    @Test func everyArgumentAndVariableArrivesWhole() async throws {
        let arguments = ["", "two words", "a=b", "ünï €", "-n", ""] + (0..<40).map { "arg\($0)" }
        var env = ["WITH_EQUALS": "x=y=z", "EMPTY": "", "UNICODE": "grüße ✓"]
        for index in 0..<30 { env["MANY_\(index)"] = String(repeating: "v", count: index * 7) }
        let script = #"for arg in "$@"; do printf '%s\n' "[$arg]"; done; env"#
        let outcome = await runner().run(invocation(["/bin/sh", "-c", script, "sh"] + arguments, env: env))
        #expect(outcome.status == .exited(0))
        let lines = outcome.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(Array(lines.prefix(arguments.count)) == arguments.map { "[\($0)]" })
        let printed = Set(lines.dropFirst(arguments.count))
        for (name, value) in env { #expect(printed.contains("\(name)=\(value)"), "\(name)") }
        #expect(printed.contains("AUTONOMY_TASK_ID=7") && printed.contains("AUTONOMY_DATABASE=/x.db"))
    }

    @Test func thePayloadFileIsRemovedAfterwards() async throws {
        let outcome = await runner().run(invocation(["/bin/sh", "-c", "echo \"$AUTONOMY_PAYLOAD_FILE\""]))
        let path = outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(path.contains("autonomy-task-7-"))
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    /// What a process that ended without removing its files (SIGKILL) left goes; what a live one
    /// holds, what is not ours to remove, and an empty file that may be a moment old stay.
    @Test func removingAbandonedFilesTakesOnlyTheFilesNoLiveProcessHolds() throws {
        let folder = try TemporaryFolder()
        let abandoned = try folder.write("autonomy-task-3-Ab12Cd", #"{"secret":"s3"}"#)
        let abandonedTool = try folder.write("autonomy-tool-Ef34Gh", "input")
        let justMade = try folder.write("autonomy-decision-sig-Ij56Kl", "")
        let other = try folder.write("notes-autonomy-task-1", "x")
        let notMade = try folder.write("autonomy-task-5-notes.txt", "not a name autonomy makes")
        let outside = try folder.write("outside/autonomy-task-8-Mn78Op", "kept")
        try FileManager.default.createSymbolicLink(
            atPath: folder.file("autonomy-task-9-Qr90St"), withDestinationPath: outside)
        let linked = folder.file("autonomy-task-6-Hl12Ab")
        #expect(link(outside, linked) == 0)
        // Nothing below throws: the live file is removed once, at the end.
        let live = try PayloadFile(.task(4), bytes: Array("{}".utf8), in: folder.path)
        let now = Int64(Date().timeIntervalSince1970)

        #expect(PayloadFile.removeAbandoned(now: now, in: folder.path) == 2)
        let left = Set((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
        #expect(!left.contains((abandoned as NSString).lastPathComponent))
        #expect(!left.contains((abandonedTool as NSString).lastPathComponent))
        #expect(FileManager.default.fileExists(atPath: live.path), "locked by a live process")
        #expect(FileManager.default.fileExists(atPath: justMade), "empty and young: its maker may not hold it yet")
        #expect(FileManager.default.fileExists(atPath: other) && FileManager.default.fileExists(atPath: notMade))
        #expect(FileManager.default.fileExists(atPath: outside) && FileManager.default.fileExists(atPath: linked))
        #expect(left.contains("autonomy-task-9-Qr90St"), "a symbolic link is not a file of ours")

        // The empty one goes once it is old; the live one stays as long as it is held.
        #expect(PayloadFile.removeAbandoned(now: now + 61, in: folder.path) == 1)
        #expect(!FileManager.default.fileExists(atPath: justMade))
        #expect(FileManager.default.fileExists(atPath: live.path))
        live.remove()
        #expect(!FileManager.default.fileExists(atPath: live.path))
        live.remove()  // a second call does nothing (it closes no descriptor twice)
    }

    /// A temporary folder that is not there is named in the attempt's error, with what to do.
    @Test func aPayloadFileThatCannotBeMadeSaysWhereAndWhy() throws {
        let folder = try TemporaryFolder()
        let missing = folder.file("missing")
        // As the folder is written, or as the system's temporary folder is found (a slash at the end).
        for given in [missing, missing + "/"] {
            #expect {
                _ = try PayloadFile(.task(1), bytes: Array("{}".utf8), in: given)
            } throws: { error in
                // No file can be made there at all: the worker's fault, which spends no attempt.
                (error as? PayloadFile.Failure)?.folderUnusable == true
                    && "\(error)"
                        == "\(missing): No such file or directory (TMPDIR names the folder for payload files; it must exist and be writable)"
            }
            #expect(PayloadFile.folderProblem(given)?.description == PayloadFile.folderProblem(missing)?.description)
        }
        #expect(PayloadFile.folderProblem(folder.path) == nil)
    }

    @Test func theSweepKnowsTheNamesPayloadFilesGet() {
        for name in [
            "autonomy-task-12-aZ09bY", "autonomy-task-0-ABCDEF", "autonomy-tool-x1y2z3", "autonomy-decision-sig-Qq1234",
        ] {
            #expect(PayloadFile.isOurs(name), "\(name)")
        }
        for name in [
            "autonomy-task--aZ09bY", "autonomy-task-12-aZ09b", "autonomy-task-12-aZ09bYz", "autonomy-task-1x-aZ09bY",
            "autonomy-tool-x1y2z!", "autonomy-tool-", "autonomy-ops-123456", "xautonomy-tool-x1y2z3",
            "autonomy-task-١-aZ09bY",
        ] {
            #expect(!PayloadFile.isOurs(name), "\(name)")
        }
    }

    @Test func aNonZeroExitIsAnOutcomeWithTheTailOfStderr() async {
        let outcome = await runner(maxStderr: 16).run(
            invocation(
                ["/bin/sh", "-c", "echo 'early noise that is long' >&2; echo 'the real reason' >&2; exit 4"]))
        #expect(outcome.status == .exited(4))
        #expect(outcome.stderrTail == "the real reason\n" && outcome.stderrTruncated)
        #expect(outcome.errorSummary == "exited with status 4: the real reason")
        let short = await runner(maxStderr: 16).run(invocation(["/bin/sh", "-c", "echo short >&2; exit 4"]))
        #expect(short.stderrTail == "short\n" && !short.stderrTruncated)
    }

    /// The stored stderr tail is one text for every reader: a NUL byte (which SQLite readers stop at
    /// and PostgreSQL refuses) and invalid UTF-8 arrive as U+FFFD. Stdout keeps its NUL (stored as
    /// JSON, where it is escaped).
    @Test func aNulInTheOutputIsStoredAsAReplacementCharacter() async {
        let outcome = await runner().run(
            invocation(["/bin/sh", "-c", #"printf 'out\000put' ; printf 'a\000b\377c' >&2; exit 3"#]))
        #expect(outcome.status == .exited(3))
        #expect(outcome.stdout == "out\u{0}put")
        #expect(outcome.stderrTail == "a\u{FFFD}b\u{FFFD}c")
        #expect(!outcome.stderrTail.unicodeScalars.contains("\0"))
    }

    @Test func stdoutIsCutAtTheLimitAndMarked() async {
        let outcome = await runner(maxOutput: 100).run(invocation(["/bin/sh", "-c", "yes x | head -c 100000"]))
        #expect(outcome.status == .exited(0))
        #expect(outcome.stdout.utf8.count == 100)
        #expect(outcome.stdoutTruncated)
    }

    @Test func aTimeoutStopsTheWholeProcessGroup() async throws {
        let folder = try TemporaryFolder()
        let marker = folder.file("child.pid")
        // The handler starts a grandchild that would outlive it, then hangs; both must be stopped.
        let script = "sleep 300 & echo $! > \(marker); wait"
        let outcome = await runner(grace: Interval(milliseconds: 200)).run(
            invocation(["/bin/sh", "-c", script], timeout: .seconds(2)))
        #expect(outcome.status == .timedOut(.seconds(2)))
        let pid = try #require(
            Int32(String(contentsOfFile: marker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        var alive = true
        for _ in 0..<100 where alive {  // reaped by init; give it a moment to vanish
            alive = kill(pid, 0) == 0 && !isZombie(pid)
            if alive { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(!alive)
    }

    @Test func aHandlerThatIgnoresTermIsKilledAfterTheGrace() async {
        let outcome = await runner(grace: Interval(milliseconds: 200)).run(
            invocation(
                ["/bin/sh", "-c", "trap '' TERM; sleep 300 & wait; sleep 300"], timeout: Interval(milliseconds: 200)))
        #expect(outcome.status == .timedOut(Interval(milliseconds: 200)))
        #expect(outcome.durationMs < 60_000)  // not the handler's 300 s (a loaded machine takes seconds)
    }

    @Test func aHandlerIsJudgedWhenItExitsEvenIfAChildKeepsItsOutputOpen() async throws {
        let outcome = await runner().run(
            invocation(["/bin/sh", "-c", "sleep 120 & echo '{\"ok\":true}'"], timeout: .seconds(100)))
        #expect(outcome.status == .exited(0))
        #expect(outcome.durationMs < 60_000)  // not the child's 120 s (a loaded machine takes seconds)
        #expect(outcome.resultJSON == #"{"ok":true}"#)
    }

    @Test func aMissingProgramCouldNotStart() async {
        let outcome = await runner().run(invocation(["/nonexistent/handler"]))
        guard case .couldNotStart = outcome.status else {
            Issue.record("expected couldNotStart, got \(outcome.status)")
            return
        }
        let bare = await runner().run(invocation(["no-such-program-anywhere"]))
        guard case .couldNotStart(let reason) = bare.status else {
            Issue.record("expected couldNotStart, got \(bare.status)")
            return
        }
        #expect(reason.contains("no-such-program-anywhere"))
    }

    @Test func relativePathsAreTakenFromTheConfigFolder() async throws {
        let folder = try TemporaryFolder()
        try folder.write("bin/hello.sh", "#!/bin/sh\npwd\n", executable: true)
        try FileManager.default.createDirectory(atPath: folder.file("work"), withIntermediateDirectories: true)
        let outcome = await runner().run(invocation(["./bin/hello.sh"], cwd: "work", base: folder.path))
        #expect(outcome.status == .exited(0))
        #expect(outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix("/work"))
    }

    @Test func aStoppedRunEndsItsGroupWithTermThenKill() async throws {
        let folder = try TemporaryFolder()
        let marker = folder.file("started")
        // Ignores TERM, so only the KILL after the grace ends it.
        let script = "trap '' TERM; sleep 300 & touch \(marker); wait; sleep 300"
        let running = Task {
            await runner(grace: Interval(milliseconds: 200)).run(invocation(["/bin/sh", "-c", script]))
        }
        for _ in 0..<1000 where !FileManager.default.fileExists(atPath: marker) {
            try await Task.sleep(for: .milliseconds(10))
        }
        running.cancel()
        let outcome = await running.value
        #expect(outcome.status == .stopped)
        #expect(outcome.durationMs < 60_000)
    }

    @Test func aRunCancelledBeforeItStartsNeverStartsTheProgram() async throws {
        let folder = try TemporaryFolder()
        let marker = folder.file("ran")
        let running = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await runner().run(invocation(["/bin/sh", "-c", "touch \(marker)"]))
        }
        #expect(await running.value.status == .stopped)
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test func aMissingWorkingDirectoryCouldNotStart() async {
        let outcome = await runner().run(invocation(["/bin/true"], cwd: "/nonexistent/folder"))
        #expect(outcome.status == .couldNotStart("/bin/true: no such working directory /nonexistent/folder"))
    }

    /// The worker's own state stays its own: no descriptor it has open, no signal it ignores.
    @Test func aHandlerGetsOnlyItsStandardStreamsAndDefaultSignals() async throws {
        // No O_CLOEXEC: it would leak through exec. (A number of its own: the test process is shared.)
        let inherited = open("/dev/null", O_RDONLY)
        #expect(inherited > 2)
        defer { close(inherited) }
        let previous = signal(SIGUSR2, SIG_IGN)
        defer { signal(SIGUSR2, previous) }
        let outcome = await runner().run(
            invocation(["/bin/sh", "-c", "ls /proc/$$/fd; grep SigIgn /proc/$$/status"]))
        #expect(outcome.status == .exited(0))
        let lines = outcome.stdout.split(separator: "\n").map(String.init)
        #expect(["0", "1", "2"].allSatisfy(lines.contains))
        #expect(!lines.contains(String(inherited)))
        // Signals 32 and 33 are glibc's own (threads, setxid), which posix_spawn leaves ignored and
        // no program can use; SIGUSR2 (bit 11), set above, must not be.
        let ignored = lines.first { $0.hasPrefix("SigIgn:") }.flatMap {
            UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
        }
        #expect(ignored.map { $0 & ~0x1_8000_0000 } == 0, "\(lines)")
    }

    @Test func moreOutputThanAPipeHoldsIsReadWhileTheHandlerRuns() async {
        // 1 MB on each stream: a runner that read only at the end would leave the handler blocked.
        let outcome = await runner(maxOutput: 2_000_000, maxStderr: 10).run(
            invocation([
                "/bin/sh", "-c", "head -c 1000000 /dev/zero; head -c 999990 /dev/zero >&2; printf 'last tail.' >&2",
            ]))
        #expect(outcome.status == .exited(0))
        #expect(outcome.stdout.utf8.count == 1_000_000 && !outcome.stdoutTruncated)
        #expect(outcome.stderrTail == "last tail.")
    }

    /// Output that never pauses cannot keep the runner from its deadline, or from the end.
    @Test func aHandlerThatNeverStopsWritingStillTimesOut() async {
        let outcome = await runner(maxOutput: 1000, grace: Interval(milliseconds: 200)).run(
            invocation(["/bin/sh", "-c", "cat /dev/zero & cat /dev/zero & wait"], timeout: Interval(milliseconds: 500)))
        #expect(outcome.status == .timedOut(Interval(milliseconds: 500)))
        #expect(outcome.stdout.utf8.count == 1000 && outcome.stdoutTruncated)
    }

    @Test func aChildLeftWritingEndsWithItsHandler() async {
        let outcome = await runner(maxOutput: 1000).run(
            invocation(["/bin/sh", "-c", "yes & sleep 0.2; exit 3"], timeout: .seconds(100)))
        #expect(outcome.status == .exited(3))
        #expect(outcome.durationMs < 60_000)
    }
}

@Suite struct ProcessGroupTests {
    /// After a handler's leader is reaped its group id could be recycled: a group outside this
    /// worker's session is never signalled.
    @Test func aGroupInAnotherSessionIsNeverSignalled() throws {
        let folder = try TemporaryFolder()
        let pidFile = folder.file("pid")
        let starter = Process()
        starter.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        starter.arguments = ["-f", "/bin/sh", "-c", "echo $$ > \"$0\"; exec sleep 30", pidFile]
        try starter.run()
        var id: pid_t = 0
        for _ in 0..<400 where id == 0 {
            id =
                pid_t(
                    (try? String(contentsOfFile: pidFile, encoding: .utf8))?.trimmingCharacters(
                        in: .whitespacesAndNewlines) ?? "") ?? 0
            if id == 0 { usleep(5_000) }
        }
        defer { if id > 0 { kill(id, SIGKILL) } }
        #expect(id > 0 && getsid(id) == id && getsid(id) != getsid(0))
        ProcessGroup.signal(id, SIGKILL)
        usleep(50_000)
        #expect(kill(id, 0) == 0, "a stranger's group was signalled")
    }
}
