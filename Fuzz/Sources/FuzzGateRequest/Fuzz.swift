import AutonomyCore
import Foundation

/// Any bytes as a gate request: a GateError or a request, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    _ = try? GateWire.decodeRequest(Data(bytes: start, count: count))
    return 0
}

// SwiftPM links an executable's entry point as FuzzGateRequest_main; it hands the input to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ test: @convention(c) (UnsafeRawPointer?, Int) -> CInt
) -> CInt

@_cdecl("FuzzGateRequest_main")
func entry(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var (count, arguments) = (argc, argv)
    return runDriver(&count, &arguments) { start, size in
        guard let start else { return 0 }
        return fuzz(start, size)
    }
}
