import AutonomyTestSupport
import Foundation
import Synchronization
import Testing

@testable import AutonomyCore

/// The short programs autonomy asks things of (ssh-keygen, systemctl) run through the handlers'
/// runner: input from a file, output kept, a time-out, and many at once from many threads.
@Suite struct ToolTests {
    @Test func aToolGetsItsInputAndItsOutputAndStatusAreKept() {
        let result = Tool.run(
            "/bin/sh", ["-c", "cat; echo 'first line' >&2; echo second >&2; exit 3"], input: Array("hello".utf8),
            timeout: .seconds(60))
        #expect(result.status == .exited(3))
        #expect(result.stdout == "hello")
        #expect(result.stderr == "first line\nsecond")
        #expect(result.detail == "first line" && !result.passed)
        let empty = Tool.run("/bin/sh", ["-c", "cat"], timeout: .seconds(60))
        #expect(empty.passed && empty.stdout.isEmpty && empty.detail == "exit 0")
    }

    @Test func aToolThatNeverAnswersIsStoppedWithWhatItStartedAtItsTimeOut() async throws {
        let folder = try TemporaryFolder()
        let marker = folder.file("child.pid")
        let result = Tool.run(
            "/bin/sh", ["-c", "sleep 300 & echo $! > \(marker); wait"], timeout: Interval(milliseconds: 300))
        #expect(result.status == .timedOut(Interval(milliseconds: 300)))
        #expect(result.detail == "no answer within \(Interval(milliseconds: 300))")
        let pid = try #require(
            Int32(String(contentsOfFile: marker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        var alive = true
        for _ in 0..<100 where alive {
            alive = kill(pid, 0) == 0 && !isZombie(pid)
            if alive { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(!alive)
    }

    /// ssh-keygen asks the terminal for a passphrase: in a process group of its own it would be a
    /// background job, stopped by the terminal as it reads.
    @Test func aToolThatMayAskTheTerminalStaysInTheCallersProcessGroup() {
        let script = "read -r _ _ _ _ group _ < /proc/$$/stat; echo \"$$ $group\""
        let own = Tool.run("/bin/sh", ["-c", script], timeout: .seconds(60))
        let ids = own.stdout.split(whereSeparator: \.isWhitespace)
        #expect(ids.count == 2 && ids[0] == ids[1], "\(own.stdout)")
        let atTerminal = Tool.run("/bin/sh", ["-c", script], timeout: .seconds(60), terminal: true)
        let group = atTerminal.stdout.split(whereSeparator: \.isWhitespace).last.map(String.init)
        #expect(group == String(getpgrp()), "\(atTerminal.stdout)")
    }

    @Test func aMissingToolIsAnAnswerNotACrash() {
        let result = Tool.run("/nonexistent/ssh-keygen", ["-Y", "sign"], input: [1, 2, 3], timeout: .seconds(5))
        #expect(!result.passed && result.detail.contains("no such program"), "\(result.detail)")
    }

    /// Foundation's `Process` once crashed here when several threads started programs at once.
    @Test func manyToolsRunAtOnceFromManyThreads() {
        let answers = Mutex([Int: String]())
        DispatchQueue.concurrentPerform(iterations: 48) { index in
            let result = Tool.run(
                "/bin/sh", ["-c", "cat; echo \(index)"], input: Array("n".utf8), timeout: .seconds(60))
            answers.withLock { $0[index] = result.passed ? result.stdout : result.detail }
        }
        let all = answers.withLock { $0 }
        #expect(all.count == 48)
        for (index, answer) in all { #expect(answer == "n\(index)\n") }
    }
}
