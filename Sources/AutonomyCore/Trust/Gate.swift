import Foundation

/// One request to the local entry gate: the same requests the CLI makes of the queue, and
/// nothing more. Files are read by the client and sent as bytes: the gate never opens a path a
/// producer names.
public struct GateRequest: Codable, Sendable, Equatable {
    public enum Verb: String, Codable, Sendable, CaseIterable {
        case enqueue, status
        case tasksList = "tasks_list"
        case tasksShow = "tasks_show"
        case approvals
        /// Step one of a decision: the statement to sign, for this key.
        case prepareDecision = "prepare_decision"
        /// Step two: the signed statement.
        case decide
    }

    /// The protocol's version; absent means 1.
    public var version: Int?
    public var verb: Verb
    public var json: Bool?
    // enqueue
    public var type: String?
    public var payload: String?
    /// Raw bytes of `--payload-file`, checked as strictly as a local file.
    public var payloadBytes: Data?
    public var priority: Int?
    public var delay: String?
    public var runAt: String?
    public var maxAttempts: Int?
    public var key: String?
    public var source: String?
    public var subject: String?
    /// Raw bytes of `--batch`.
    public var batch: Data?
    // tasks
    public var state: String?
    public var limit: Int?
    public var id: Int64?
    // decisions
    public var decision: String?
    public var note: String?
    public var publicKey: String?
    public var statement: String?
    public var signature: String?

    public init(verb: Verb) { self.verb = verb }

    enum CodingKeys: String, CodingKey {
        case version, verb, json, type, payload
        case payloadBytes = "payload_bytes"
        case priority, delay
        case runAt = "run_at"
        case maxAttempts = "max_attempts"
        case key, source, subject, batch, state, limit, id, decision, note
        case publicKey = "public_key"
        case statement, signature
    }
}

/// What the gate answers: exactly what the command would have printed, and its exit code.
public struct GateAnswer: Codable, Sendable, Equatable {
    public var exit: Int32
    public var stdout: String
    public var stderr: String
    /// For `prepare_decision`: the statement to sign.
    public var statement: String?

    public init(exit: Int32, stdout: String = "", stderr: String = "", statement: String? = nil) {
        self.exit = exit
        self.stdout = stdout
        self.stderr = stderr
        self.statement = statement
    }
}

/// Who is on the other end of a Unix socket, as the kernel says (`SO_PEERCRED`).
public struct PeerCredentials: Sendable, Equatable {
    public var pid: Int32
    public var uid: uid_t
    public var gid: gid_t
    public var user: String
    /// The names of every group the user is in (its primary group first).
    public var groups: [String]

    /// Asks the kernel who connected to `descriptor`.
    ///
    /// - Throws: `GateError.notASocket` when the descriptor is no Unix socket.
    public static func of(_ descriptor: Int32) throws(GateError) -> PeerCredentials {
        var credentials: (Int32, UInt32, UInt32) = (0, 0, 0)  // struct ucred: pid, uid, gid
        var length = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0 else {
            throw .notASocket
        }
        let (pid, uid, gid) = credentials
        let user = userName(uid) ?? String(uid)
        return PeerCredentials(pid: pid, uid: uid, gid: gid, user: user, groups: groupNames(user: user, gid: gid))
    }

    static func userName(_ uid: uid_t) -> String? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &found) == 0, found != nil else { return nil }
        return String(cString: entry.pw_name)
    }

    static func groupNames(user: String, gid: gid_t) -> [String] {
        var count: Int32 = 256
        var ids = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(user, gid, &ids, &count) < 0 {
            ids = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(user, gid, &ids, &count)
        }
        var names: [String] = []
        for id in [gid] + ids.prefix(Int(max(0, count))) {
            var entry = group()
            var found: UnsafeMutablePointer<group>?
            var buffer = [CChar](repeating: 0, count: 64 * 1024)
            if getgrgid_r(id, &entry, &buffer, buffer.count, &found) == 0, found != nil {
                let name = String(cString: entry.gr_name)
                if !names.contains(name) { names.append(name) }
            }
        }
        return names
    }
}

/// The gate connection could not be used.
public enum GateError: Error, Sendable, Equatable, CustomStringConvertible {
    case notASocket
    case tooLarge(limit: Int)
    case timedOut
    case incomplete
    case malformed(String)
    case unreachable(path: String, reason: String)

    public var description: String {
        switch self {
        case .notASocket:
            return
                "standard input is not a Unix socket: 'autonomy gate' is started by autonomy-gate.socket, one process per connection"
        case .tooLarge(let limit):
            return "the request is over \(limit) bytes"
        case .timedOut:
            return "the request did not arrive in time"
        case .incomplete:
            return "the connection closed before a whole request arrived"
        case .malformed(let reason):
            return "not a gate request: \(reason)"
        case .unreachable(let path, let reason):
            return "cannot reach the gate at \(path): \(reason)"
        }
    }
}

/// The wire: one JSON request line in, one JSON answer out, then the connection closes.
public enum GateWire {
    /// Where systemd's socket listens.
    public static let defaultPath = "/run/autonomy/gate.sock"
    public static let pathVariable = "AUTONOMY_GATE"

    /// Reads one request (up to a newline, or the end of input) of at most `limit` bytes, waiting
    /// at most `timeout` in all.
    public static func readRequest(from descriptor: Int32, limit: Int, timeout: Duration) throws(GateError)
        -> GateRequest
    {
        let deadline = ContinuousClock.now + timeout
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        reading: while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw .timedOut }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(
                clamping: left.inMilliseconds + 1)
            let ready = poll(&poller, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw .incomplete
            }
            if ready == 0 { throw .timedOut }
            let count = read(descriptor, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw .incomplete
            }
            if count == 0 { break }
            if let newline = chunk[..<count].firstIndex(of: UInt8(ascii: "\n")) {
                data += chunk[..<newline]
                guard data.count <= limit else { throw .tooLarge(limit: limit) }
                break reading
            }
            data += chunk[..<count]
            guard data.count <= limit else { throw .tooLarge(limit: limit) }
        }
        guard !data.isEmpty else { throw .incomplete }
        return try decodeRequest(Data(data))
    }

    /// Decodes one request line: a known verb (an unknown one is named), protocol version 1, and
    /// fields of the right kinds.
    public static func decodeRequest(_ data: Data) throws(GateError) -> GateRequest {
        struct Envelope: Decodable { var verb: String? }
        if let envelope = try? JSONDecoder().decode(Envelope.self, from: data),
            let verb = envelope.verb, GateRequest.Verb(rawValue: verb) == nil
        {
            let known = GateRequest.Verb.allCases.map(\.rawValue).joined(separator: ", ")
            throw .malformed("unknown verb \"\(verb.prefix(40))\" (known: \(known))")
        }
        do {
            let request = try JSONDecoder().decode(GateRequest.self, from: data)
            guard (request.version ?? 1) == 1 else {
                throw GateError.malformed("version \(request.version ?? 0) is not spoken here")
            }
            return request
        } catch let error as GateError {
            throw error
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            throw .malformed("not JSON")
        } catch {
            var path: [any CodingKey] = []
            switch error as? DecodingError {
            case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?, .dataCorrupted(let context)?:
                path = context.codingPath
            case .keyNotFound(let key, let context)?:
                path = context.codingPath + [key]
            default:
                break
            }
            throw .malformed("\(ConfigError.keyPath(path)): missing or of the wrong kind")
        }
    }

    /// The largest answer the gate sends; a larger one is replaced by an error that says so.
    public static let answerLimit = 64 << 20

    /// Writes the whole answer and closes the sending side. A client that stops reading holds the
    /// gate at most 10 seconds.
    public static func write(_ answer: GateAnswer, to descriptor: Int32) {
        var answer = answer
        if answer.stdout.utf8.count + answer.stderr.utf8.count > answerLimit {
            answer = GateAnswer(
                exit: 65, stderr: "error: the answer is over \(answerLimit >> 20) MiB: ask for less (--limit)\n")
        }
        guard let data = try? JSONEncoder().encode(answer) else { return }
        var limit = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        writeAll(Array(data) + [UInt8(ascii: "\n")], to: descriptor)
        shutdown(descriptor, Int32(SHUT_WR))
    }

    static func writeAll(_ bytes: [UInt8], to descriptor: Int32) {
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            written += count
        }
    }

    /// Sends one request to the gate at `path` and waits for its answer.
    public static func send(_ request: GateRequest, to path: String, timeout: Duration = .seconds(120))
        throws(GateError) -> GateAnswer
    {
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw .unreachable(path: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .unreachable(path: path, reason: "the path is too long for a socket")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason =
                errno == EACCES
                ? "permission denied (is this user in the producers group?)" : String(cString: strerror(errno))
            throw .unreachable(path: path, reason: reason)
        }
        guard let body = try? JSONEncoder().encode(request) else { throw .malformed("cannot encode the request") }
        writeAll(Array(body) + [UInt8(ascii: "\n")], to: descriptor)
        shutdown(descriptor, Int32(SHUT_WR))
        var answer = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, 1000)
            if ready < 0 && errno != EINTR { break }
            if ready <= 0 { continue }
            let count = read(descriptor, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            answer += chunk[..<count]
            guard answer.count <= 256 << 20 else { throw .tooLarge(limit: 256 << 20) }
        }
        guard let decoded = try? JSONDecoder().decode(GateAnswer.self, from: Data(answer)) else {
            throw .unreachable(
                path: path,
                reason: answer.isEmpty ? "it closed the connection without an answer" : "its answer is not understood")
        }
        return decoded
    }
}
