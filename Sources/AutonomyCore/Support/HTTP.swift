import AsyncHTTPClient
import NIOCore

/// Every outgoing HTTP request (verifiers, webhooks, model calls) goes through one client that
/// never follows a redirect: a 3xx is an answer, so nobody can bounce a request (and its API key or
/// its "evidence") to another host.
enum HTTP {
    static let client: HTTPClient = {
        let configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: .seconds(10), read: .seconds(60)))
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// How a request ended.
    enum Outcome: Sendable {
        /// A whole answer (its body cut at the limit).
        case answered(status: Int, body: ByteBuffer)
        /// The headers came, the body broke off.
        case bodyBroken(status: Int)
        /// No answer: `refused` when the connection itself failed, so the server did no work.
        case unreachable(refused: Bool, detail: String)
        /// Nothing complete within the time limit, the body included.
        case timedOut
    }

    /// Sends `request` and reads up to `bodyLimit` bytes of the answer, all within `timeout`:
    /// AsyncHTTPClient's own deadline ends with the headers, so a body that stalls is cut here.
    static func fetch(_ request: HTTPClientRequest, timeout: Interval, bodyLimit: Int) async -> Outcome {
        await withDeadline(timeout) {
            let response: HTTPClientResponse
            do {
                response = try await client.execute(request, deadline: .distantFuture)
            } catch {
                let text = String(describing: error).lowercased()
                let refused = text.contains("connect") || text.contains("refused") || text.contains("resolve")
                return .unreachable(refused: refused, detail: String(String(describing: error).prefix(200)))
            }
            let status = Int(response.status.code)
            do {
                return .answered(status: status, body: try await response.body.collect(upTo: bodyLimit))
            } catch {
                return .bodyBroken(status: status)
            }
        } ?? .timedOut
    }
}
