import AutonomyCore
import Foundation
import Testing

/// The dashboard in a real browser: `Tests/browser/dashboard.py` drives Chromium (selenium) against
/// the built binary. `.ci/run` installs Chromium, chromedriver, selenium and axe-selenium-python and
/// sets AUTONOMY_REQUIRE_BROWSER, so there the test cannot skip itself quietly.
@Suite struct BrowserEndToEndTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("browser/dashboard.py").path

    static var browserInstalled: Bool {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"),
            FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")
        else { return false }
        return Tool.run(
            "/usr/bin/env", ["python3", "-c", "import selenium, axe_selenium_python"], timeout: .seconds(60)
        )
        .passed
    }

    static var wanted: Bool {
        browserInstalled || ProcessInfo.processInfo.environment["AUTONOMY_REQUIRE_BROWSER"] != nil
    }

    @Test(.enabled(if: wanted, "needs chromium, chromium-driver and selenium (pip)"))
    func anOperatorApprovesInTheDashboardAndALinkRejectsInAFreshBrowser() async throws {
        let shots = try TemporaryFolderInTest()
        let run = Tool.run(
            "/usr/bin/env", ["python3", Self.script, autonomyBinary, shots.path], timeout: .minutes(15))
        #expect(run.passed && run.stdout.contains("all browser checks passed"), "\(run.stdout)\n\(run.stderr)")
        for shot in ["dashboard.png", "one-click.png"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: shots.path + "/" + shot)[.size] as? Int) ?? 0
            #expect(size > 10_000, "\(shot) was not saved")
        }
    }
}

/// A folder removed when the value goes.
final class TemporaryFolderInTest {
    let path: String
    init() throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent("autonomy-shots-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
