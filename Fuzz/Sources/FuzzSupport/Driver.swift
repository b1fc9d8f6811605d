/// libFuzzer's driver, for targets whose entry point SwiftPM names `TARGET_main`.
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ test: @convention(c) (UnsafeRawPointer?, Int) -> CInt
) -> CInt

/// Hands the command line to libFuzzer, which calls `test` with each input.
public func runFuzzer(
    _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
    _ test: @convention(c) (UnsafeRawPointer?, Int) -> CInt
) -> CInt {
    var (count, arguments) = (argc, argv)
    return runDriver(&count, &arguments, test)
}
