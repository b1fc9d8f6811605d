import Foundation
import Synchronization

/// A tiny HTTP/1.1 server on 127.0.0.1 for webhook tests: it records each request and answers
/// with the next status from a script (then 200). One request per connection.
final class LoopbackHTTPServer: Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: Data
    }

    let port: UInt16
    /// The address it listens on: loopback, or one that network namespaces reach.
    let host: String
    private let listener: Int32
    private let state: Mutex<(statuses: [Int], requests: [Request], bodies: [String])>
    /// How long each answer waits (to play a slow receiver).
    private let delay: Duration

    /// `bodies` are answered in order with the statuses (then an empty body).
    /// Answered once `bodies` is used up.
    private let defaultBody: String

    /// Extra header lines every answer carries (e.g. a `Location` to tempt a client into a redirect).
    private let extraHeaders: String
    /// Send the headers and part of the body, then stall this long before the rest.
    private let stallBody: Duration

    init(
        statuses: [Int] = [], bodies: [String] = [], defaultBody: String = "", delay: Duration = .zero,
        extraHeaders: String = "", stallBody: Duration = .zero, host: String = "127.0.0.1"
    ) throws {
        self.host = host
        self.delay = delay
        self.extraHeaders = extraHeaders
        self.stallBody = stallBody
        self.defaultBody = defaultBody
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw POSIXError(.EIO) }
        self.listener = listener
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(listener, 256) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
        state = Mutex((statuses, [], bodies))
        let thread = Thread { [self] in self.serve() }
        thread.start()
    }

    deinit { close(listener) }

    var url: String { "http://\(host):\(port)/hook" }
    var requests: [Request] { state.withLock { $0.requests } }

    func stop() { shutdown(listener, Int32(SHUT_RDWR)) }

    private func serve() {
        while true {
            let connection = accept(listener, nil, nil)
            guard connection >= 0 else { return }
            handle(connection)
            close(connection)
        }
    }

    private func handle(_ connection: Int32) {
        var buffer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int?
        var continued = false
        while true {
            if headerEnd == nil, let range = Data(buffer).range(of: Data("\r\n\r\n".utf8)) {
                headerEnd = range.upperBound
            }
            if let end = headerEnd {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                let headers = Self.headers(head)
                if headers["expect"]?.lowercased() == "100-continue", !continued {
                    continued = true
                    _ = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8).withUnsafeBytes {
                        write(connection, $0.baseAddress, $0.count)
                    }
                }
                let length = Int(headers["content-length"] ?? "0") ?? 0
                if buffer.count - end >= length {
                    let line = head.split(separator: "\r\n").first?.split(separator: " ") ?? []
                    let request = Request(
                        method: line.first.map(String.init) ?? "", path: line.dropFirst().first.map(String.init) ?? "",
                        headers: headers, body: Data(buffer[end..<(end + length)]))
                    let (status, answer) = state.withLock { state -> (Int, String) in
                        state.requests.append(request)
                        let status = state.statuses.isEmpty ? 200 : state.statuses.removeFirst()
                        return (status, state.bodies.isEmpty ? defaultBody : state.bodies.removeFirst())
                    }
                    if delay > .zero { Thread.sleep(forTimeInterval: Double(delay.components.seconds)) }
                    let head =
                        "HTTP/1.1 \(status) Test\r\nContent-Type: application/json\r\n\(extraHeaders)"
                        + "Content-Length: \(answer.utf8.count + (stallBody > .zero ? 100 : 0))\r\nConnection: close\r\n\r\n"
                    _ = Array((head + answer).utf8).withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                    if stallBody > .zero { Thread.sleep(forTimeInterval: Double(stallBody.components.seconds)) }
                    return
                }
            }
            let count = read(connection, &chunk, chunk.count)
            guard count > 0 else { return }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    private static func headers(_ head: String) -> [String: String] {
        var headers: [String: String] = [:]
        for line in head.split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        return headers
    }
}
