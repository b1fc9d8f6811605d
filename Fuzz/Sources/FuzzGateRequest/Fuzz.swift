import AutonomyCore
import Foundation
import FuzzSupport

/// Any bytes as a gate request: a GateError or a request, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    _ = try? GateWire.decodeRequest(Data(bytes: start, count: count))
    return 0
}

// SwiftPM links an executable's entry point as FuzzGateRequest_main; it hands the input to libFuzzer.
@_cdecl("FuzzGateRequest_main")
func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, size in start.map { fuzz($0, size) } ?? 0 }
}
