import AutonomyCore
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// Every error answer has one shape: `{"error": {"status": 422, "code": "invalid_field",
/// "message": "…", "field": "type"}}`. The message is written for the caller; it never holds a
/// stack trace, a path on this machine or a secret.
struct APIError: Error, HTTPResponseError {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var field: String?
    var headers: HTTPFields = [:]

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String, field: String? = nil) {
        (self.status, self.code, self.message, self.field) = (status, code, message, field)
    }

    var body: JSONValue {
        var error: [String: JSONValue] = [
            "status": .int(Int64(status.code)), "code": .string(code), "message": .string(message),
        ]
        if let field { error["field"] = .string(field) }
        return ["error": .object(error)]
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = JSONResponse.make(status, body)
        for field in headers { response.headers.append(field) }
        return response
    }

    static let unauthorized: APIError = {
        var error = APIError(
            .unauthorized, "unauthorized",
            "send a producer's token: Authorization: Bearer aut_… (autonomy producer token NAME)")
        error.headers[.wwwAuthenticate] = #"Bearer realm="autonomy""#
        return error
    }()

    /// The answer for an error a core function threw: the status that says what to do about it.
    static func from(_ error: any Error) -> APIError {
        if let error = error as? APIError { return error }
        if let error = error as? QueueError { return from(error) }
        if let error = error as? TrustError { return from(error) }
        if let error = error as? StoreError {
            if case .busy = error {
                var busy = APIError(.serviceUnavailable, "busy", "the queue is busy: try again in a second")
                busy.headers[.retryAfter] = "1"
                return busy
            }
            return APIError(.serviceUnavailable, "unavailable", "the queue cannot be used right now")
        }
        if let error = error as? any HTTPResponseError {
            switch error.status {
            case .contentTooLarge:
                return APIError(.contentTooLarge, "too_large", "the request body is too large")
            case .notFound: return APIError(.notFound, "not_found", "no such resource")
            case .methodNotAllowed: return APIError(.methodNotAllowed, "method_not_allowed", "method not allowed")
            default:
                return APIError(error.status, "http_error", error.status.reasonPhrase)
            }
        }
        return APIError(.internalServerError, "internal", "internal failure (it is logged; please report it)")
    }

    private static func from(_ error: QueueError) -> APIError {
        switch error {
        case .undeclaredType:
            // Not reached from a producer's request: the core refuses an undeclared type to a
            // producer as one it may not enqueue, without the map (`on(behalfOf:)`).
            return APIError(.unprocessableContent, "invalid_field", error.description, field: "type")
        case .invalidPayload:
            return APIError(.unprocessableContent, "invalid_field", error.description, field: "payload")
        case .payloadTooLarge:
            return APIError(.contentTooLarge, "too_large", error.description, field: "payload")
        case .invalidRequest:
            return APIError(.unprocessableContent, "invalid_request", error.description)
        case .keyConflict:
            return APIError(.conflict, "key_conflict", error.description, field: "Idempotency-Key")
        case .taskNotFound:
            return APIError(.notFound, "not_found", error.description)
        case .notCancellable, .notRetryable, .payloadPruned:
            return APIError(.conflict, "refused", error.description)
        case .batchLine:
            return APIError(.unprocessableContent, "invalid_request", error.description)
        }
    }

    private static func from(_ error: TrustError) -> APIError {
        switch error {
        case .typeNotAllowed:
            return APIError(.forbidden, "forbidden", error.description, field: "type")
        case .rateLimited(_, _, _, let retryAfter):
            var limited = APIError(.tooManyRequests, "rate_limited", error.description)
            limited.headers[.retryAfter] = String(max(1, retryAfter))
            return limited
        case .notAProducer, .verbNotAllowed, .sourceForged:
            return APIError(.forbidden, "forbidden", error.description)
        default:
            return APIError(.forbidden, "forbidden", "not permitted")
        }
    }
}

/// The routes the router has, to tell a wrong method (405, with `Allow`) from a wrong path (404).
final class KnownRoutes: Sendable {
    private let table = Mutex<[(segments: [Substring], method: String)]>([])

    func set(_ routes: [(path: String, method: String)]) {
        table.withLock { $0 = routes.map { ($0.path.split(separator: "/"), $0.method) } }
    }

    /// The methods a path answers to, whichever matched.
    func methods(for path: String) -> [String] {
        let segments = path.split(separator: "/")
        return table.withLock { routes in
            routes.filter { route in
                route.segments.count == segments.count
                    && zip(route.segments, segments).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
            }.map(\.method)
        }
    }
}

/// Turns every error a route or the router throws (a route that does not exist, a body too large)
/// into the one JSON error shape; anything unexpected is logged here and answered without detail.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let known: KnownRoutes

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch {
            var answer = APIError.from(error)
            if answer.status == .notFound, case let allowed = known.methods(for: request.uri.path), !allowed.isEmpty,
                !allowed.contains(request.method.rawValue)
            {
                answer = APIError(
                    .methodNotAllowed, "method_not_allowed", "this path answers \(allowed.joined(separator: ", "))")
                answer.headers[.allow] = allowed.joined(separator: ", ")
            }
            if answer.status == .internalServerError {
                context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            }
            return try answer.response(from: request, context: context)
        }
    }
}

enum JSONResponse {
    /// A JSON answer: `Cache-Control: no-store`, since it may hold a payload, and never sniffed
    /// as anything else.
    static func make(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
        make(status, text: value.canonicalText)
    }

    static func make(_ status: HTTPResponse.Status, encoding value: some Encodable) throws -> Response {
        make(status, text: try JSONOutput.text(value))
    }

    private static func make(_ status: HTTPResponse.Status, text: String) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "application/json; charset=utf-8", .cacheControl: "no-store",
                .xContentTypeOptions: "nosniff",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text + "\n")))
    }
}
