import AutonomyCore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import Synchronization

/// `autonomy serve`: the API and the pages on a listening address, until stopped.
public enum AutonomyServer {
    /// `listening` is told the address (`https://…` with TLS) once the socket is bound (port 0
    /// picks a free one).
    public static func run(
        _ environment: ServerEnvironment, state: ServerState, host: String, port: Int, logger: Logger,
        listening: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws {
        let http1 = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .seconds(30)))
        let app = Application(
            router: AutonomyAPI.router(environment, state: state),
            server: try state.tls.map { try .tls(http1, tlsConfiguration: $0.configuration) } ?? http1,
            configuration: .init(address: .hostname(host, port: port), serverName: "autonomy"),
            onServerRunning: { channel in
                let address = channel.localAddress
                let scheme = state.tls == nil ? "http" : "https"
                listening("\(scheme)://\(address?.ipAddress ?? host):\(address?.port ?? port)")
            },
            logger: logger)
        do {
            try await app.runService()
        } catch let error as IOError {
            // NIO's text names its own call ("bind(descriptor:ptr:bytes:)"): the system's reason is enough.
            throw ListenFailure(code: error.errnoCode)
        }
    }

    /// The address could not be listened on, with the system's reason.
    public struct ListenFailure: Error, CustomStringConvertible {
        public var code: Int32
        public var description: String {
            String(cString: strerror(code))
                + (code == EADDRINUSE ? " (another program listens there: pick another --listen)" : "")
        }
    }

    /// TLS without a proxy in front: the certificate chain and its private key, both PEM files.
    ///
    /// - Throws: `ServerSetupError` saying which file and what is wrong with it.
    public static func tls(certificate: String, key: String) throws -> TLSSetup {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificate)
        } catch {
            throw ServerSetupError("--tls-cert \(certificate): not a readable PEM certificate chain (\(error))")
        }
        guard !chain.isEmpty else { throw ServerSetupError("--tls-cert \(certificate): holds no certificate") }
        let privateKey: NIOSSLPrivateKey
        do {
            privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
        } catch {
            throw ServerSetupError("--tls-key \(key): not a readable, unencrypted PEM private key (\(error))")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.minimumTLSVersion = .tlsv12
        // Made once now, so that a key that is not the certificate's is said at start.
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw ServerSetupError("--tls-key \(key) does not go with --tls-cert \(certificate) (\(error))")
        }
        return TLSSetup(configuration: configuration)
    }
}

/// A loaded certificate and key, ready to serve HTTPS.
public struct TLSSetup: Sendable {
    let configuration: TLSConfiguration
}

/// A start-up problem the operator fixes (a certificate, a key): one line that says what.
public struct ServerSetupError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// What the server keeps between requests: its signing key, its TLS set-up, and the failed tries
/// per client.
public final class ServerState: Sendable {
    let signer: DecisionSigner?
    /// How the server keeps the tokens it issues and honours (login links, sessions, its own
    /// alerts' links): keyed by its signing key, so that a row written into the database by anyone
    /// without that key (the worker user, a handler) is neither a session nor a link that decides.
    let seal: TokenSeal
    let tls: TLSSetup?
    /// Returns when a request has taken too long; nil: `serve.request_timeout` of wall time.
    /// Tests pass their own, so that no test waits for the clock.
    let deadline: (@Sendable () async throws -> Void)?
    let failures = FailureLimiter()
    /// A ledger verification started from the dashboard is running.
    let verifying = Mutex(false)

    /// `seal` defaults to the one `signer` derives. A signer without a keyed seal (one that cannot
    /// derive it, which `serve` refuses at start) signs nothing: a session or link anyone could
    /// have written would otherwise be enough.
    public init(
        signer: DecisionSigner?, seal: TokenSeal? = nil, tls: TLSSetup? = nil,
        deadline: (@Sendable () async throws -> Void)? = nil
    ) {
        let seal = seal ?? signer.flatMap { try? TokenSeal(serverKey: $0) } ?? .plain
        (self.signer, self.seal) = (seal.isKeyed ? signer : nil, seal)
        (self.tls, self.deadline) = (tls, deadline)
    }

    /// The digests a link's token is looked up by, in order, and whether a link found by each
    /// decides on its own: only one this server issued under its key. A link issued without it
    /// (by `work-once` or `enqueue`, which the worker user runs) shows its request and decides
    /// nothing: whoever can write the database could have made it.
    var linkSeals: [(seal: TokenSeal, decides: Bool)] {
        seal.isKeyed ? [(seal, true), (.plain, false)] : [(.plain, false)]
    }
}

/// `serve.request_timeout` of wall time.
func sleep(_ timeout: Interval) -> @Sendable () async throws -> Void {
    { try await Task.sleep(for: .milliseconds(timeout.milliseconds)) }
}

/// Every request, its body included, ends within the deadline: past it the handler is cancelled
/// (reading a body stops at once), and the request is answered 408 with its connection closed,
/// so a client that trickles a body in, or never ends it, holds a connection no longer than
/// `serve.request_timeout`. A handler already past its body, in the database (which a
/// cancellation does not stop), finishes, and its own answer is sent: a 408 always means that
/// nothing was done.
struct DeadlineMiddleware<Context: RequestContext>: RouterMiddleware {
    let deadline: @Sendable () async throws -> Void

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        // The rest of the chain runs in a child task, so that the deadline can cancel it; the
        // group outlives neither, so `next` does not really escape.
        try await withoutActuallyEscaping(next) { next in
            let handler = Handler(call: next)
            return try await withThrowingTaskGroup(of: Response?.self) { group in
                group.addTask { try await handler.call(request, context) }
                group.addTask { [deadline] in
                    try await deadline()
                    return nil
                }
                defer { group.cancelAll() }
                if let first = try await group.next(), let response = first { return response }
                // The deadline came first: cancel the handler; if it finishes all the same, its
                // answer is the truth.
                group.cancelAll()
                if let late = try? await group.next(), let response = late { return response }
                var timedOut = APIError(
                    .requestTimeout, "timeout", "the request took too long (serve.request_timeout); send it again")
                timedOut.headers[.connection] = "close"
                throw timedOut
            }
        }
    }

    /// `next`, carried into the child task that runs it (Hummingbird itself calls it from tasks).
    private struct Handler: @unchecked Sendable {
        let call: (Request, Context) async throws -> Response
    }
}

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let xForwardedProto = Self("X-Forwarded-Proto")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let secFetchSite = Self("Sec-Fetch-Site")!
}
