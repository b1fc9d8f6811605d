import AutonomyCore
import Foundation

/// Any bytes as a gate request: a GateError or a request, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    _ = try? GateWire.decodeRequest(Data(bytes: start, count: count))
    return 0
}
