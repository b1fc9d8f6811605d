// swift-tools-version: 6.2
// libFuzzer targets for autonomy's parsers. Not built by CI or `swift test`: run Fuzz/run.sh.
import Foundation
import PackageDescription

// A path dependency's identity is its folder's name, whatever the clone is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
let autonomy = root.lastPathComponent.lowercased()

let fuzzers = ["FuzzJSON", "FuzzConfig", "FuzzDuration", "FuzzGateRequest"]

let package = Package(
    name: "autonomy-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [.target(name: "FuzzSupport")]
        + fuzzers.map {
            .executableTarget(
                name: $0, dependencies: ["FuzzSupport", .product(name: "AutonomyCore", package: autonomy)])
        },
    swiftLanguageModes: [.v6]
)
