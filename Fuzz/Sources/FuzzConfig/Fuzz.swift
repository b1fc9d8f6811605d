import AutonomyCore
import Foundation

/// Any bytes as a configuration: a ConfigError or a configuration, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    if let loaded = try? ConfigLoader.parse(Data(bytes: start, count: count)) {
        for type in loaded.configuration.taskTypes.values { _ = type.rate(["to": "a@b.c", "n": 1]) }
    }
    return 0
}
