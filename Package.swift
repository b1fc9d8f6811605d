// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "autonomy",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "autonomy", targets: ["autonomy"]),
        .library(name: "AutonomyCore", targets: ["AutonomyCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // The HTTP server of `autonomy serve`, without its default traits (swift-configuration).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        // `serve --tls-cert/--tls-key`; already built for AsyncHTTPClient.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.2"),
        // The dashboard's pages: logic-less templates, escaped by default.
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        // The PostgreSQL store (several machines, one queue).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // pidfd_open(2) for the exec runner: a system call Swift cannot reach through Glibc.
        .target(name: "SystemShims", linkerSettings: [.linkedLibrary("sqlite3")]),
        .target(
            name: "AutonomyCore",
            dependencies: [
                "SystemShims",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        // `autonomy serve`: HTTP stays out of the core; every route calls core functions.
        .target(
            name: "AutonomyServer",
            dependencies: [
                "AutonomyCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        .executableTarget(
            name: "autonomy",
            dependencies: [
                "AutonomyCore",
                "AutonomyServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // Test hooks (a shifted clock) exist only in debug builds; release never sets this.
            swiftSettings: [.define("AUTONOMY_TEST_HOOKS", .when(configuration: .debug))],
            // The static Swift runtime's link line exports every symbol of the executable (55,000):
            // each start then spent a quarter of its instructions in the dynamic linker's symbol
            // lookups and in the runtime's `dladdr` over that table. Nothing looks symbols up in
            // the executable by name.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--no-export-dynamic"], .when(configuration: .release))]
        ),
        // Test doubles shared by both test targets (a manual clock, an in-memory task).
        .target(
            name: "AutonomyTestSupport",
            dependencies: [
                "AutonomyCore", .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Tests/AutonomyTestSupport"),
        .testTarget(
            name: "AutonomyCoreTests",
            dependencies: [
                "AutonomyCore",
                "AutonomyTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "AutonomyServerTests",
            dependencies: [
                "AutonomyServer",
                "AutonomyCore",
                "AutonomyTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "autonomyTests",
            dependencies: [
                "autonomy",
                "AutonomyCore",
                "AutonomyTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
