import AutonomyCore
import Foundation
import Synchronization

/// The local entry gate as systemd runs it (`Accept=yes`): a Unix socket whose every connection
/// gets its own `autonomy gate` process, with the connection on its standard input.
final class GateListener: Sendable {
    let socketPath: String
    private let listener: Int32
    private final class Lines: Sendable {
        let lines = Mutex<[String]>([])
    }
    private let logs = Lines()

    /// Every line the gate processes wrote to their stderr (the journal, under systemd).
    var log: [String] { logs.lines.withLock { $0 } }

    init(sandbox: Sandbox, environment: [String: String] = [:]) throws {
        socketPath = sandbox.file("gate.sock")
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in socketPath.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(listener, 16) == 0 else { throw CLIFailureInTest("cannot listen on \(socketPath)") }
        chmod(socketPath, 0o666)
        let (descriptor, logs) = (listener, self.logs)
        var variables = ProcessInfo.processInfo.environment
        variables["AUTONOMY_CONFIG"] = sandbox.configPath
        variables["AUTONOMY_DATABASE"] = sandbox.databasePath
        variables.merge(environment) { _, new in new }
        let gateEnvironment = variables
        Thread.detachNewThread {
            while true {
                let connection = accept(descriptor, nil, nil)
                if connection < 0 { return }  // the listener was closed
                let process = Process()
                process.executableURL = URL(fileURLWithPath: autonomyBinary)
                process.arguments = ["gate"]
                process.environment = gateEnvironment
                process.standardInput = FileHandle(fileDescriptor: connection, closeOnDealloc: false)
                process.standardOutput = FileHandle.nullDevice
                let errors = Pipe()
                process.standardError = errors
                do {
                    try process.run()
                } catch {
                    close(connection)
                    continue
                }
                close(connection)
                let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                logs.lines.withLock { $0 += text.split(separator: "\n").map(String.init) }
            }
        }
    }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    deinit { stop() }
}

extension Sandbox {
    /// Runs one `autonomy gate` on one end of a socket pair, sends `request` on the other end the
    /// way a producer would, and returns what came back.
    func exchangeWithGate(
        _ request: [UInt8], halfClose: Bool = true, environment: [String: String] = [:]
    ) async throws -> (answer: GateAnswer?, raw: String, status: Int32, stderr: String) {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else {
            throw CLIFailureInTest("no socket pair")
        }
        let (mine, theirs) = (pair[0], pair[1])
        // The writer thread is joined before `mine` closes: a write after the close could land in
        // whatever file reuses the descriptor number next (once, the test's own database).
        let writerDone = DispatchSemaphore(value: 0)
        defer {
            writerDone.wait()
            close(mine)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: autonomyBinary)
        process.arguments = ["gate"]
        var variables = ProcessInfo.processInfo.environment
        variables["AUTONOMY_CONFIG"] = configPath
        variables["AUTONOMY_DATABASE"] = databasePath
        variables.merge(environment) { _, new in new }
        process.environment = variables
        process.standardInput = FileHandle(fileDescriptor: theirs, closeOnDealloc: false)
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        close(theirs)
        // Sending and receiving at once: a large request must not wait for the answer's room.
        Thread.detachNewThread {
            var written = 0
            while written < request.count {
                // A gate that answered early and closed is an answer, not a SIGPIPE for the tests.
                let count = request[written...].withUnsafeBytes {
                    send(mine, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if count <= 0 { break }
                written += count
            }
            if halfClose { shutdown(mine, Int32(SHUT_WR)) }
            writerDone.signal()
        }
        var received = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(mine, &chunk, chunk.count)
            if count <= 0 { break }
            received += chunk[..<count]
        }
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let answer = try? JSONDecoder().decode(GateAnswer.self, from: Data(received))
        return (answer, String(decoding: received, as: UTF8.self), process.terminationStatus, stderr)
    }

    func exchangeWithGate(_ request: GateRequest) async throws -> GateAnswer {
        let bytes = Array(try JSONEncoder().encode(request)) + [UInt8(ascii: "\n")]
        guard let answer = try await exchangeWithGate(bytes).answer else { throw CLIFailureInTest("no answer") }
        return answer
    }
}

/// The name of the user running the tests, as the gate will see it.
let currentUserName: String = {
    guard let entry = getpwuid(geteuid()) else { return String(geteuid()) }
    return String(cString: entry.pointee.pw_name)
}()
