import AutonomyCore
import Foundation
import FuzzSupport

/// Any bytes: the parser refuses them or reads them; what it reads, written canonically and read
/// again, is the same value, and its canonical text does not change.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    guard let value = try? JSONValue.parse(Data(bytes: start, count: count)) else { return 0 }
    let text = value.canonicalText
    guard let again = try? JSONValue.parse(text) else { fatalError("canonical text does not parse: \(text)") }
    guard again == value else { fatalError("parse → write → parse is not the identity: \(text)") }
    guard again.canonicalText == text else { fatalError("canonical text is not stable: \(text)") }
    return 0
}

// SwiftPM links an executable's entry point as FuzzJSON_main; it hands the input to libFuzzer.
@_cdecl("FuzzJSON_main")
func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, size in start.map { fuzz($0, size) } ?? 0 }
}
