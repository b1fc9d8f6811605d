import AutonomyCore
import Foundation
import FuzzSupport

/// Any text as a duration: nil, or a value whose own spelling reads back as the same value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    guard let interval = Interval(parsing: text), interval.milliseconds >= 0 else { return 0 }
    // A duration is shown in its two largest units: the shown text reads back, never as more.
    guard let shown = Interval(parsing: interval.description), shown <= interval else {
        fatalError("\(text) → \(interval) does not read back")
    }
    return 0
}

// SwiftPM links an executable's entry point as FuzzDuration_main; it hands the input to libFuzzer.
@_cdecl("FuzzDuration_main")
func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, size in start.map { fuzz($0, size) } ?? 0 }
}
