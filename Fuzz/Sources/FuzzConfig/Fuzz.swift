import AutonomyCore
import Foundation
import FuzzSupport

/// Any bytes as a configuration: a ConfigError or a configuration, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    if let loaded = try? ConfigLoader.parse(Data(bytes: start, count: count)) {
        for type in loaded.configuration.taskTypes.values { _ = type.rate(["to": "a@b.c", "n": 1]) }
    }
    return 0
}

// SwiftPM links an executable's entry point as FuzzConfig_main; it hands the input to libFuzzer.
@_cdecl("FuzzConfig_main")
func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, size in start.map { fuzz($0, size) } ?? 0 }
}
