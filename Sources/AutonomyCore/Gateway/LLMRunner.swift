import Foundation

/// Runs `llm` handlers through the model gateway: the prompt filled from the payload, the
/// completion as the task's result.
public struct LLMRunner: HandlerRunner {
    public var gateway: ModelGateway

    public init(gateway: ModelGateway) { self.gateway = gateway }

    public func run(_ invocation: HandlerInvocation) async -> HandlerOutcome {
        guard case .llm(let handler) = invocation.type.handler else {
            return HandlerOutcome(status: .couldNotStart("not an llm handler"))
        }
        let prompt: String
        do {
            prompt = try PromptTemplate.render(handler.prompt, task: invocation.task)
        } catch {
            return HandlerOutcome(status: .couldNotStart("the prompt template: \(error)"))
        }
        // A retry after a failed verification climbs one tier from the model that answered before.
        let previous =
            invocation.attempt > 1 ? (try? await gateway.store.lastCallTier(taskID: invocation.task.id)) ?? nil : nil
        let request = LLMRequest(
            prompt: prompt, system: handler.system, tier: handler.tier, maxTokens: handler.maxTokens,
            taskID: invocation.task.id, escalateFrom: previous)
        do {
            let response = try await gateway.complete(request)
            return HandlerOutcome(status: .exited(0), stdout: response.text, durationMs: response.latencyMs)
        } catch {
            if case .budgetExhausted(_, let until, _) = error, !invocation.type.critical {
                return HandlerOutcome(status: .deferred(until: until, reason: error.description))
            }
            return HandlerOutcome(status: .couldNotStart(error.description))
        }
    }
}

/// An `llm` handler's prompt: `{{payload.PATH}}` and `{{task.id}}` filled from the task, as is.
enum PromptTemplate {
    static func render(_ prompt: String, task: TaskRecord) throws -> String {
        let payload = try? JSONValue.parse(task.payload)
        return try Template.fill(prompt) { name in
            if name == "task.id" { return String(task.id) }
            guard name.hasPrefix("payload.") else {
                throw Template.MissingValue(description: "{{\(name)}} names neither payload nor task.id")
            }
            return try Template.scalar(payload?[path: String(name.dropFirst("payload.".count))], named: name)
        }
    }
}

/// Sends each handler to the runner for its kind.
public struct HandlerDispatcher: HandlerRunner {
    public var exec: any HandlerRunner
    public var llm: any HandlerRunner

    public init(exec: any HandlerRunner, llm: any HandlerRunner) {
        self.exec = exec
        self.llm = llm
    }

    public func run(_ invocation: HandlerInvocation) async -> HandlerOutcome {
        switch invocation.type.handler {
        case .exec: return await exec.run(invocation)
        case .llm: return await llm.run(invocation)
        case .remediation:
            return HandlerOutcome(status: .couldNotStart("fix proposals are applied by the worker itself"))
        }
    }
}
