import Foundation
import Subprocess
import Testing

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// The kill -9 soak, short: about 50 SIGKILLs of `work-once` (and the handlers it started) landing
/// mid-work, then no task lost, no side effect repeated, an intact database and ledger, and no
/// payload file of a killed worker left behind.
/// `python3 bench/chaos.py --kills 1000` is the long run.
@Suite struct ChaosEndToEndTests {
    static let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("bench/chaos.py").path

    @Test(.enabled(if: python != nil, "python3 is not installed here; the kill -9 soak is skipped"))
    func fiftyKillsMidWorkLoseNothingAndRepeatNothing() async throws {
        let result = try await Subprocess.run(
            .path(FilePath(try #require(Self.python))),
            arguments: [Self.script, "--binary", autonomyBinary, "--kills", "50", "--seed", "7"],
            output: .string(limit: 1 << 20), error: .string(limit: 1 << 20))
        let report = result.standardOutput
        #expect(result.terminationStatus == .exited(0), "\(report)\(result.standardError)")
        #expect(report.contains("tasks lost: 0 ") && report.contains("side effects repeated: 0 "), "\(report)")
        #expect(report.contains("PRAGMA integrity_check: ok") && report.contains("the chain holds"), "\(report)")
        #expect(report.contains("payload files left: 0 "), "\(report)")
    }
}
