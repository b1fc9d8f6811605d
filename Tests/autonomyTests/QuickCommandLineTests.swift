import ArgumentParser
import Testing

@testable import autonomy

/// The quick reading of the most frequent command lines must build exactly the command the
/// parser builds, and leave everything else to the parser.
@Suite struct QuickCommandLineTests {
    /// Lines read quickly; each must equal the parser's reading, property by property.
    static let accepted: [[String]] = [
        ["enqueue", "noop"],
        ["enqueue", "noop", "--payload", #"{"a":1}"#],
        [
            "enqueue", #"--payload={"a": [1, 2], "b": "x=y"}"#, "noop", "--key", "order-1234", "--source", "sales-bot",
            "--subject", "a line, with spaces", "--priority", "5", "--max-attempts=3", "--delay", "10m", "--json",
            "--config", "/etc/autonomy/autonomy.json", "--database", "q.db", "--gate", "/run/autonomy/gate.sock",
        ],
        [
            "enqueue", "send_email", "--payload-file", "mail.json", "--run-at", "2026-12-01T09:00:00Z", "--priority",
            "+7",
        ],
        ["enqueue", "noop", "--payload-file", "-"],
        ["enqueue", "--batch", "tasks.jsonl"],
        ["enqueue", "--batch=-", "--json", "--database=/var/lib/autonomy/autonomy.db"],
        ["enqueue", "daily_report", "--payload", "{}", "--max-attempts", "0", "--key", "help"],
        ["work-once"],
        ["work-once", "--json"],
        ["work-once", "--drain"],
        ["work-once", "--drain", "--max-tasks", "100", "--max-seconds=50", "--json", "--config", "c.json"],
        ["work-once", "--database", "postgres://autonomy@db.example/autonomy", "--drain", "--max-seconds", "0"],
    ]

    /// Lines the quick reading must leave to the parser: help, errors, and forms it does not read.
    static let leftToTheParser: [[String]] = [
        [], ["status"], ["--help"], ["--version", "enqueue"], ["enqueue"], ["enqueue", "--help"], ["enqueue", "-h"],
        ["enqueue", "help"], ["enqueue", "noop", "more"], ["enqueue", "noop", "--unknown"],
        ["enqueue", "noop", "--payload", "{}", "--payload", "{}"], ["enqueue", "noop", "--payload"],
        ["enqueue", "noop", "--payload="], ["enqueue", "noop", "--priority", "high"],
        ["enqueue", "noop", "--priority", "-5"], ["enqueue", "noop", "--priority=-5"],
        ["enqueue", "noop", "--json=yes"],
        ["enqueue", "noop", "--json", "--json"],
        ["enqueue", "noop", "--delay", "1m", "--run-at", "2026-12-01T09:00:00Z"],
        ["enqueue", "noop", "--payload", "{}", "--payload-file", "p.json"], ["enqueue", "--batch", "f", "noop"],
        ["enqueue", "noop", "--"], ["enqueue", "noop", "-"], ["enqueue", ""], ["enqueue", "noop", "--drain"],
        ["enqueue", "noop", "--generate-completion-script", "bash"], ["work-once", "--max-tasks", "5"],
        ["work-once", "--drain", "--max-tasks", "0"], ["work-once", "--drain", "--max-seconds", "86401"],
        ["work-once", "noop"], ["work-once", "--gate", "/run/x.sock"], ["work-once", "--drain", "--drain"],
    ]

    @Test(arguments: accepted)
    func aLineReadQuicklyIsTheCommandTheParserBuilds(_ arguments: [String]) throws {
        guard case .command(let quick) = QuickCommandLine.read(arguments) else {
            Issue.record("not read quickly: \(arguments)")
            return
        }
        let parsed = try Autonomy.parseAsRoot(arguments)
        #expect(type(of: quick) == type(of: parsed))
        // A wrapper left unset dumps as `.definition`, the parser's as `.value`: any property
        // missed or read differently shows here.
        #expect(dumped(quick) == dumped(parsed))
        #expect(!dumped(quick).contains("definition"))
    }

    @Test(arguments: leftToTheParser)
    func everythingElseIsLeftToTheParser(_ arguments: [String]) {
        #expect(QuickCommandLine.read(arguments) == nil, "read quickly: \(arguments)")
    }

    /// Lines drawn from the options' names, values at the edges and unknown words, in a fixed
    /// pseudo-random order: whatever the quick reading accepts, the parser reads the same.
    @Test func anyLineReadQuicklyIsReadTheSameByTheParser() throws {
        let words = [
            "--config", "--database", "--gate", "--payload", "--payload-file", "--priority", "--delay", "--run-at",
            "--max-attempts", "--key", "--source", "--subject", "--batch", "--json", "--drain", "--max-seconds",
            "--max-tasks", "--payload={}", "--priority=3", "--json=", "--key=", "--", "-h", "--help", "--nope", "-",
            "noop", "send_email", "help", "{}", #"{"a":1}"#, "5", "+3", "-2", "0", "86401", "10m", "", "a=b", "x y",
        ]
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
        var accepted = 0
        for _ in 0..<2_500 {
            var line = [next(2) == 0 ? "enqueue" : "work-once"]
            for _ in 0..<next(7) { line.append(words[next(words.count)]) }
            guard case .command(let quick) = QuickCommandLine.read(line) else { continue }
            accepted += 1
            let parsed = try Autonomy.parseAsRoot(line)
            #expect(dumped(quick) == dumped(parsed), "\(line)")
        }
        #expect(accepted > 150, "too few lines were read quickly to say anything: \(accepted)")
    }

    @Test func versionIsWhatTheParserPrints() throws {
        guard case .version = QuickCommandLine.read(["--version"]) else {
            Issue.record("--version not read quickly")
            return
        }
        #expect(throws: (any Error).self) { try Autonomy.parseAsRoot(["--version"]) }
        do {
            _ = try Autonomy.parseAsRoot(["--version"])
        } catch {
            #expect(Autonomy.message(for: error) == AutonomyVersion.current)
        }
    }

    private func dumped(_ value: Any) -> String {
        var text = ""
        dump(value, to: &text)
        return text
    }
}
