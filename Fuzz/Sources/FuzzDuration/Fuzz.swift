import AutonomyCore
import Foundation

/// Any text as a duration: nil, or a value whose own spelling reads back as the same value.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    guard let interval = Interval(parsing: text), interval.milliseconds >= 0 else { return 0 }
    guard Interval(parsing: interval.description) == interval else {
        fatalError("\(text) → \(interval) does not read back")
    }
    return 0
}
