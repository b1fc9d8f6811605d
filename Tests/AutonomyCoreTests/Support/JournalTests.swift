import Foundation
import Logging
import Testing

@testable import AutonomyCore

@Suite struct JournalTests {
    @Test func eachLevelHasItsSyslogPriority() {
        let expected: [Logger.Level: Int] = [
            .trace: 7, .debug: 7, .info: 6, .notice: 5, .warning: 4, .error: 3, .critical: 2,
        ]
        for (level, priority) in expected { #expect(Journal.priority(level) == priority) }
    }

    @Test func stderrLinesArePrefixedOnlyUnderTheJournal() {
        #expect(Journal.format("error: no such type\n", journal: true) == "<3>error: no such type\n")
        #expect(Journal.format("warning: a\nsecond", journal: true) == "<4>warning: a\n<5>second\n")
        #expect(Journal.format("error: x", priority: 6, journal: true) == "<6>error: x\n")
        #expect(Journal.format("error: no such type", journal: false) == "error: no such type\n")
        // journald ends a line at NUL too: it is shown, so nothing starts a line of its own.
        #expect(Journal.format("error: bad \u{0}<0>forged", journal: true) == #"<3>error: bad \u{0}<0>forged"# + "\n")
    }

    @Test func aLogLineNamesTheTaskFirstAndEscapesWhatItWasGiven() {
        let line = AutonomyLogHandler.line(
            .warning, label: "autonomy.worker", message: "attempt ended",
            metadata: ["state": "queued", "error": "exit 2: bad\n<0>forged", "type": "send_email", "task": "42"],
            journal: true)
        #expect(
            line
                == #"<4>autonomy.worker: attempt ended task=42 type=send_email error="exit 2: bad\n<0>forged" state=queued"#
                + "\n")
        let plain = AutonomyLogHandler.line(
            .info, label: "autonomy.worker", message: "ok", metadata: ["task": "1"], journal: false,
            now: Date(timeIntervalSince1970: 0))
        #expect(plain == "1970-01-01T00:00:00Z info autonomy.worker: ok task=1\n")
        #expect(AutonomyLogHandler.escaped("a\u{1b}[31m", quoting: false) == #"a\u{1b}[31m"#)
    }

    @Test func journalStreamIsBelievedOnlyForTheStreamItNames() throws {
        var info = stat()
        #expect(fstat(2, &info) == 0)
        #expect(Journal.isStandardError(environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino)"]))
        #expect(!Journal.isStandardError(environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino + 1)"]))
        #expect(!Journal.isStandardError(environment: ["JOURNAL_STREAM": "garbage"]))
        #expect(!Journal.isStandardError(environment: [:]))
    }
}
