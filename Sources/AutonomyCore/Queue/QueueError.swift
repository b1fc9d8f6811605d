/// A queue request that was refused. Nothing was written when one of these is thrown.
public enum QueueError: Error, Sendable, Equatable, CustomStringConvertible {
    case undeclaredType(String, declared: [String])
    case invalidPayload(String)
    case payloadTooLarge(bytes: Int, limit: Int)
    case invalidRequest(String)
    case keyConflict(key: String, existingID: Int64)
    case taskNotFound(Int64)
    case notCancellable(id: Int64, state: TaskState)
    case notRetryable(id: Int64, state: TaskState)
    /// A dead task whose payload retention has emptied: there is nothing left to run again.
    case payloadPruned(id: Int64)
    /// A line of an `enqueue --batch` input was refused; the whole batch was.
    indirect case batchLine(Int, QueueError)

    public var description: String {
        switch self {
        case .undeclaredType(let type, let declared):
            let known =
                declared.isEmpty
                ? "the configuration declares none" : "declared: \(declared.sorted().joined(separator: ", "))"
            return
                "task type \(JSONValue.string(type).canonicalText) is not declared in the configuration (\(known)); add it under task_types"
        case .invalidPayload(let reason):
            return "the payload is not valid JSON: \(reason)"
        case .payloadTooLarge(let bytes, let limit):
            return
                "the payload is \(bytes) bytes, over the limit of \(limit) (queue.max_payload_bytes); pass a reference to the data instead"
        case .invalidRequest(let reason):
            return reason
        case .keyConflict(let key, let id):
            return
                "idempotency key \"\(key)\" already belongs to task \(id) with a different type or payload; use a new key"
        case .taskNotFound(let id):
            return "no task \(id) (see 'autonomy tasks list')"
        case .notCancellable(let id, let state):
            return "task \(id) is \(state.rawValue); only queued or awaiting_approval tasks can be cancelled"
        case .notRetryable(let id, let state):
            return "task \(id) is \(state.rawValue); only dead tasks can be retried"
        case .payloadPruned(let id):
            return "task \(id)'s payload was pruned; enqueue it again instead"
        case .batchLine(let line, let error):
            return "line \(line): \(error.description) (nothing was enqueued)"
        }
    }
}
