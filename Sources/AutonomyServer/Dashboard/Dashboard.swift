import AutonomyCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The dashboard: the whole system at a glance, for a logged-in operator (a session cookie from
/// `autonomy serve login`). Every page reads through the core's functions, the same the CLI uses;
/// the only things it changes are decisions (through the request pages, `/r/ID`) and a ledger
/// verification it runs on request.
enum Dashboard {
    static func add(to router: Router<ServerContext>, _ environment: ServerEnvironment, _ state: ServerState) {
        func page(_ path: RouterPath, _ build: @escaping @Sendable (PageRequest) async throws -> Response) {
            router.get(path) { request, context in
                guard let viewer = try await Viewer(request, environment, state) else { return loginFirst() }
                return try await build(
                    PageRequest(
                        request: request, context: context, viewer: viewer, environment: environment, state: state))
            }
        }
        page("/", overview)
        page("tasks", tasks)
        page("tasks/{id}", task)
        page("map", map)
        page("audits", audits)
        page("budget", budget)
        page("ledger", ledger)
        page("sources", sources)
        page("subjects", subjects)
        page("subject", subject)
        router.post("ledger/verify") { request, context in try await verify(request, context, environment, state) }
    }

    /// The operator looking, and the CSRF token their forms carry.
    struct Viewer {
        let session: OperatorSession
        let csrf: CSRF

        init?(_ request: Request, _ environment: ServerEnvironment, _ state: ServerState) async throws {
            guard let session = try await OperatorRoutes.currentSession(request, environment, state) else {
                return nil
            }
            (self.session, csrf) = (session, CSRF(request))
        }
    }

    /// One page's request, who asks, and what the server has: what every page works with.
    struct PageRequest {
        let request: Request
        let context: ServerContext
        let viewer: Viewer
        let environment: ServerEnvironment
        let state: ServerState

        func render(
            _ template: String, title: String, _ values: [String: Any], status: HTTPResponse.Status = .ok,
            live: Bool = false
        ) -> Response {
            Dashboard.render(
                template, title: title, values, status: status, viewer: viewer, live: live, request: request,
                context: context, environment: environment, state: state)
        }
    }

    static func loginFirst() -> Response {
        render("login", title: "Log in", [:], status: .unauthorized, viewer: nil, live: false)
    }

    // MARK: - Rendering

    /// A page in the layout: its body from `template` and `values`, with `has_NAME` for every list.
    static func render(
        _ template: String, title: String, _ values: [String: Any], status: HTTPResponse.Status = .ok,
        viewer: Viewer?, live: Bool, request: Request? = nil, context: ServerContext? = nil,
        environment: ServerEnvironment? = nil, state: ServerState? = nil
    ) -> Response {
        var values = flagged(values)
        if let viewer { values["csrf"] = viewer.csrf.value }
        let nonce = SecretToken.nonce()
        let html = Templates.render(
            "layout",
            flagged([
                "title": title, "nonce": nonce, "css": Templates.css, "body": Templates.render(template, values),
                "operator": viewer?.session.operatorName as Any, "live": live, "refreshMs": 5000,
            ]))
        var headers = Page.securityHeaders(nonce: nonce)
        headers[.contentType] = "text/html; charset=utf-8"
        if let viewer, let request, let context, let environment, let state,
            let cookie = viewer.csrf.setCookie(request, context, environment, state)
        {
            headers[.setCookie] = cookie
        }
        return Response(
            status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: Visible.page(html))))
    }

    /// Adds `has_NAME` (false when empty) for every list in `values`, and in the rows of lists; an
    /// absent optional is left out, so that `{{#name}}` is false for it.
    static func flagged(_ values: [String: Any]) -> [String: Any] {
        var result = values
        for (key, boxed) in values {
            let mirror = Mirror(reflecting: boxed)
            var value = boxed
            if mirror.displayStyle == .optional {
                guard let wrapped = mirror.children.first?.value else {
                    result[key] = nil
                    continue
                }
                value = wrapped
                result[key] = wrapped
            }
            if let nested = value as? [String: Any] {
                result[key] = flagged(nested)
            } else if let rows = value as? [[String: Any]] {
                result["has_\(key)"] = !rows.isEmpty
                result[key] = rows.map(flagged)
            } else if let list = value as? [Any] {
                result["has_\(key)"] = !list.isEmpty
            }
        }
        return result
    }

    static func time(_ milliseconds: Int64?, _ environment: ServerEnvironment) -> String {
        milliseconds.map { Timestamp.format($0, timeZone: environment.loaded.configuration.timezone) } ?? "—"
    }

    static func money(_ value: Double) -> String { String(format: "$%.2f", value) }

    static func age(_ milliseconds: Int64) -> String {
        let seconds = max(0, milliseconds / 1000)
        switch seconds {
        case ..<60: return "\(seconds)s"
        case ..<3600: return "\(seconds / 60)m"
        case ..<86_400: return "\(seconds / 3600)h \(seconds % 3600 / 60)m"
        default: return "\(seconds / 86_400)d \(seconds % 86_400 / 3600)h"
        }
    }

    static func percent(_ rate: Double?) -> String { rate.map { String(format: "%.0f%%", $0 * 100) } ?? "—" }

    /// A query value as a link carries it.
    static func query(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }

    static func pretty(_ json: String?) -> String {
        guard let json, !json.isEmpty else { return "—" }
        return (try? JSONValue.parse(json))?.prettyText ?? json
    }

    static func approvalItem(
        _ pending: PendingApproval, now: Int64, _ environment: ServerEnvironment, canSign: Bool
    ) -> [String: Any] {
        let (approval, task) = (pending.approval, pending.task)
        let payload = pretty(task.payload)
        // The buttons stand beside the whole payload only: a long one is decided on its own page,
        // or a producer could hide what matters past what is shown; beside the buttons its box
        // has no height limit (`pre.whole`), so no line of it scrolls out of view.
        let whole = payload.unicodeScalars.count <= 600
        return [
            "id": approval.id, "taskID": task.id, "type": task.type, "reason": approval.reason,
            "source": task.source ?? "none", "subject": task.subject ?? "none",
            "waited": age(Interval.between(approval.requestedAt, now).milliseconds),
            "expires": time(approval.expiresAt, environment),
            "payload": whole ? payload : String(payload.prefix(600)) + "\n…", "whole": whole,
            // The hash of what is shown, which the buttons send back (see `ApprovalPages.details`).
            "sha256": pending.shownPayloadSHA256, "altered": !pending.payloadIsIntact,
            "decides": whole && canSign && pending.payloadIsIntact, "noKey": !canSign,
        ]
    }

    // MARK: - Pages

    static func overview(_ page: PageRequest) async throws -> Response {
        let environment = page.environment
        let now = environment.clock.now()
        let configuration = environment.loaded.configuration
        let overview = try await environment.store.overview(configuration: configuration, now: now)
        let status = overview.status
        let budget = overview.budget
        let spent = budget.committedUSD
        let values: [String: Any] = [
            "now": time(now, environment),
            "waitingCount": max(overview.approvals.count, status.counts[.awaitingApproval, default: 0]),
            "more": status.counts[.awaitingApproval, default: 0] > overview.approvals.count,
            "listed": overview.approvals.count,
            "approvals": overview.approvals.map {
                approvalItem($0, now: now, environment, canSign: page.state.signer != nil)
            },
            "states": TaskState.allCases.compactMap { state -> [String: Any]? in
                let count = status.counts[state, default: 0]
                return count == 0 && ![.queued, .running, .done, .dead].contains(state)
                    ? nil : ["name": state.rawValue, "count": count]
            },
            "oldest": status.oldestRunnable.map {
                ["id": $0.id, "type": $0.type, "age": age(Interval.between($0.since, now).milliseconds)]
                    as [String: Any]
            }
                as Any,
            "expiredLeases": status.expiredLeases, "has_expiredLeases": status.expiredLeases > 0,
            "done": overview.hours.map(\.done).reduce(0, +), "dead": overview.hours.map(\.dead).reduce(0, +),
            "has_dead": overview.hours.contains { $0.dead > 0 },
            "sparkline": Charts.hours(overview.hours),
            "spend": "\(money(spent)) of \(money(budget.capUSD)) today"
                + (budget.capUSD > 0 ? String(format: " (%.0f%%)", spent / budget.capUSD * 100) : ""),
            "overCap": budget.capUSD > 0 && spent >= budget.capUSD,
            "spendBars": Charts.days(budget.lastDays, cap: budget.capUSD, environment.loaded.configuration.timezone),
            "shelfware": overview.shelfware,
            "deadTasks": status.recentDead.map {
                ["id": $0.id, "type": $0.type, "when": time($0.finishedAt, environment), "error": $0.lastError ?? ""]
                    as [String: Any]
            },
            "openProposals": status.countsByType[TaskType.remediationTypeName]?[.awaitingApproval] ?? 0,
            "audit": overview.lastAudit.map {
                ["at": time($0.at, environment), "headline": $0.headline] as [String: Any]
            }
                as Any,
            "breakers": status.breakers.map {
                ["target": $0.target, "closes": time($0.closesAt.milliseconds, environment), "reason": $0.reason]
                    as [String: Any]
            },
            "failedAlerts": overview.failedAlerts.map {
                [
                    "event": $0.event, "channel": $0.channel, "taskID": $0.taskID as Any, "attempts": $0.attempts,
                    "error": $0.lastError ?? "",
                ] as [String: Any]
            },
        ]
        return page.render("overview", title: "Overview", values, live: true)
    }

    /// The newest 100 tasks, by state and type: where each of the overview's counts leads.
    static func tasks(_ page: PageRequest) async throws -> Response {
        let (request, environment) = (page.request, page.environment)
        let parameters = request.uri.queryParameters
        let named = parameters["state"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        let state = named.flatMap(TaskState.init(rawValue:))
        let type = parameters["type"].map { String($0.prefix(200)) }.flatMap { $0.isEmpty ? nil : $0 }
        let unknown = named != nil && state == nil
        let tasks =
            unknown ? [] : try await environment.store.tasks(matching: TaskFilter(state: state, type: type, limit: 100))
        let filter = [state?.rawValue, type].compactMap { $0 }.joined(separator: ", ")
        let values: [String: Any] = [
            "filter": (filter.isEmpty ? nil : filter) as String? as Any,
            "error":
                (unknown
                ? "No state is called that: \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))." : nil)
                as String? as Any,
            "tasks": tasks.map {
                [
                    "id": $0.id, "type": $0.type, "state": $0.state.rawValue, "source": $0.source ?? "—",
                    "subject": $0.subject ?? "—", "updated": time($0.updatedAt, environment),
                    "error": $0.lastError.map { String($0.prefix(160)) } ?? "",
                ] as [String: Any]
            },
        ]
        // Not refreshed on its own: a filter on a rare state reads the whole table.
        return page.render("tasks", title: "Tasks", values, live: false)
    }

    static func task(_ page: PageRequest) async throws -> Response {
        let (context, environment) = (page.context, page.environment)
        guard let id = context.parameters.get("id", as: Int64.self), let task = try await environment.store.task(id: id)
        else {
            return Page.message(.notFound, "No such task", "There is no task with that number.")
        }
        let timeline = try await environment.store.ledger(forTask: id)
        let verificationEvents: Set<String> = [LedgerEvent.verified.rawValue]
        func detail(_ entry: LedgerEntry) -> String { entry.detail?.canonicalText ?? "" }
        let values: [String: Any] = [
            "id": task.id, "type": task.type, "state": task.state.rawValue, "source": task.source as Any,
            "subject": task.subject as Any, "subjectQuery": query(task.subject ?? ""), "attempts": task.attempts,
            "runAt": time(task.runAt, environment), "created": time(task.createdAt, environment),
            "finished": time(task.finishedAt, environment), "exitCode": task.exitCode.map(String.init) ?? "—",
            "lastError": task.lastError ?? "—", "payloadSHA256": task.payloadSHA256, "payload": pretty(task.payload),
            "result": pretty(task.result), "stderr": task.stderrTail ?? "—",
            "verifications": timeline.filter { verificationEvents.contains($0.event) }.map {
                ["at": time($0.at, environment), "event": $0.event, "detail": detail($0)] as [String: Any]
            },
            "timeline": timeline.map {
                [
                    "at": time($0.at, environment), "event": $0.event, "attempt": $0.attempt.map(String.init) ?? "",
                    "detail": detail($0),
                ] as [String: Any]
            },
        ]
        return page.render("task", title: "Task \(task.id)", values, live: true)
    }

    static func map(_ page: PageRequest) async throws -> Response {
        let (request, environment) = (page.request, page.environment)
        // The figures' window: 24h (the default), 7d or 30d; reading it is a pass over its ledger
        // rows. Shelfware is judged over 30 days whatever the window (a weekly job is not shelfware
        // for a quiet day), from each type's last success, which an index gives at once.
        let windows: [(name: String, interval: Interval)] = [("24h", .hours(24)), ("7d", .days(7)), ("30d", .days(30))]
        let chosen = windows.first { $0.name == request.uri.queryParameters["since"].map(String.init) } ?? windows[0]
        let now = environment.clock.now()
        let since = now - chosen.interval.milliseconds
        // The map as the worker runs it: with the overrides in effect now.
        let configuration = environment.loaded.configuration.applying(
            try await environment.store.overrides(now: now))
        let report = try await environment.store.systemMap(configuration: configuration, since: since)
        let cutoff = now - AutonomyStore.shelfwareAfter.milliseconds
        func shelfware(_ lastSuccess: Int64?) -> Bool { (lastSuccess ?? .min) < cutoff }
        let values: [String: Any] = [
            "since": time(since, environment), "window": chosen.name,
            "windows": windows.map { ["name": $0.name, "current": $0.name == chosen.name] as [String: Any] },
            "types": report.types.map {
                [
                    "name": $0.name, "owner": $0.owner ?? "—", "safety": $0.safety.rawValue, "runs": $0.runs,
                    "rate": percent($0.successRate), "p95": $0.p95Ms.map { "\($0) ms" } ?? "—",
                    "cost": money($0.costUSD),
                    "lastSuccess": time($0.lastSuccess, environment),
                    "overrides": $0.overrides.isEmpty ? "—" : $0.overrides.joined(separator: "; "),
                    "shelfware": shelfware($0.lastSuccess),
                ] as [String: Any]
            },
            "components": report.components.map {
                [
                    "name": $0.component.name, "owner": $0.component.owner ?? "—", "runs": $0.runs, "done": $0.done,
                    "dead": $0.dead,
                    "cost": money($0.costUSD), "lastSuccess": time($0.lastSuccess, environment),
                    "shelfware": shelfware($0.lastSuccess),
                ] as [String: Any]
            },
            "undeclared": report.undeclared,
        ]
        return page.render("map", title: "Map", values, live: false)
    }

    static func audits(_ page: PageRequest) async throws -> Response {
        let environment = page.environment
        let now = environment.clock.now()
        let proposals = try await environment.store.pendingApprovals(
            now: now, type: TaskType.remediationTypeName, limit: 100)
        let values: [String: Any] = [
            "proposals": proposals.map { approvalItem($0, now: now, environment, canSign: page.state.signer != nil) },
            "runs": try await environment.store.auditRuns(limit: 20).map { run in
                [
                    "id": run.id, "at": time(run.at, environment), "headline": run.headline,
                    "from": time(run.windowStart, environment), "to": time(run.windowEnd, environment),
                    "findings": run.findings.map {
                        ["severity": $0.severity, "kind": $0.kind, "subject": $0.subject as Any, "title": $0.title]
                            as [String: Any]
                    },
                    "proposals": run.proposals.map {
                        ["taskID": $0.taskID, "action": $0.action, "state": $0.state] as [String: Any]
                    },
                ] as [String: Any]
            },
        ]
        return page.render("audits", title: "Audits", values, live: false)
    }

    static func budget(_ page: PageRequest) async throws -> Response {
        let environment = page.environment
        let now = environment.clock.now()
        let configuration = environment.loaded.configuration
        let budget = try await environment.store.budget(
            settings: configuration.gateway, timeZone: configuration.timezone, now: now)
        // Per declared type, through the ledger's (type, event, at) index: a scan for a rare event
        // would read the whole ledger.
        var found: [LedgerEntry] = []
        for type in configuration.taskTypes.keys {
            found += try await environment.store.ledgerEntries(LedgerQuery(type: type, event: "deferred", limit: 50))
        }
        let deferred = found.sorted { $0.id > $1.id }.prefix(50)
        let values: [String: Any] = [
            "spend": "\(money(budget.committedUSD)) of \(money(budget.capUSD)) today",
            "overCap": budget.capUSD > 0 && budget.committedUSD >= budget.capUSD,
            "reserved": money(budget.reservedUSD), "softCap": money(budget.softCapUSD),
            "bars": Charts.days(budget.lastDays, cap: budget.capUSD, configuration.timezone),
            "days": budget.lastDays.map {
                ["day": String(time($0.day, environment).prefix(10)), "cost": money($0.costUSD)] as [String: Any]
            },
            "models": budget.perModel.map {
                [
                    "model": $0.model, "calls": $0.calls, "input": $0.inputTokens, "output": $0.outputTokens,
                    "cost": money($0.costUSD),
                ] as [String: Any]
            },
            "reservations": try await environment.store.openReservations(now: now).map {
                [
                    "model": $0.model, "amount": money($0.reservedUSD), "since": time($0.since, environment),
                    "taskID": $0.taskID as Any,
                ] as [String: Any]
            },
            "deferrals": deferred.map {
                ["at": time($0.at, environment), "taskID": $0.taskID as Any, "type": $0.type ?? ""] as [String: Any]
            },
        ]
        return page.render("budget", title: "Budget", values, live: false)
    }

    static func ledger(_ page: PageRequest) async throws -> Response {
        let (request, environment) = (page.request, page.environment)
        let parameters = request.uri.queryParameters
        func text(_ name: String) -> String? {
            parameters[Substring(name)].map(String.init).flatMap { $0.isEmpty ? nil : String($0.prefix(200)) }
        }
        var query = LedgerQuery(limit: 50)
        var error: String?
        if let task = text("task") {
            if let id = Int64(task), id > 0 { query.taskID = id } else { error = "Task is a task's number." }
        }
        query.type = text("type")
        query.event = text("event")
        if let since = text("since") {
            if let interval = Interval(parsing: since), interval <= .days(36_600) {
                query.since = environment.clock.now() - interval.milliseconds
            } else {
                error = "Since is a duration such as 24h, 7d or 30d."
            }
        }
        if let before = text("before") { query.before = Int64(before) }
        let rows = error == nil ? try await environment.store.ledgerEntries(query) : []
        var next: String?
        if rows.count == 50, let last = rows.last {
            var items = ["before=\(last.id)"]
            for name in ["task", "type", "event", "since"] {
                if let value = text(name) { items.append("\(name)=\(Dashboard.query(value))") }
            }
            next = "/ledger?" + items.joined(separator: "&")
        }
        let values: [String: Any] = [
            "task": text("task") ?? "", "type": text("type") ?? "", "event": text("event") ?? "",
            "since": text("since") ?? "", "error": error as Any, "next": next as Any,
            "rows": rows.map {
                [
                    "id": $0.id, "at": time($0.at, environment), "taskID": $0.taskID as Any, "type": $0.type ?? "",
                    "event": $0.event, "detail": $0.detail?.canonicalText ?? "",
                ] as [String: Any]
            },
        ]
        return page.render("ledger", title: "Ledger", values, live: false)
    }

    /// `ledger verify`, from the page: same origin, the page's CSRF token, a session.
    static func verify(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState
    ) async throws -> Response {
        guard let viewer = try await Viewer(request, environment, state) else { return loginFirst() }
        var request = request
        let form = Form(try await request.collectBody(upTo: 16 * 1024))
        guard Client.sameOrigin(request, environment: environment, required: true), viewer.csrf.matches(form["csrf"])
        else {
            return Page.message(.forbidden, "Refused", "This form did not come from this page: open the ledger again.")
        }
        // One at a time: a second click while one runs waits for nothing and starts nothing.
        guard
            state.verifying.withLock({ running in
                running
                    ? false
                    : {
                        running = true
                        return true
                    }()
            })
        else {
            return Page.message(
                .serviceUnavailable, "Already verifying", "A verification of the ledger is running: try again soon.")
        }
        defer { state.verifying.withLock { $0 = false } }
        let report = try await environment.store.wholeLedgerChain()
        let summary =
            report.firstBroken.map { "Row \($0.id) does not hold: \($0.reason). \(report.rows) rows read." }
            ?? "All \(report.rows) rows hold; the last hash is \(report.lastHash)."
        let values: [String: Any] = ["intact": report.firstBroken == nil, "summary": summary]
        return render(
            "verified", title: "Ledger verified", values, status: report.firstBroken == nil ? .ok : .conflict,
            viewer: viewer,
            live: false, request: request, context: context, environment: environment, state: state)
    }

    static func sources(_ page: PageRequest) async throws -> Response {
        let environment = page.environment
        let values: [String: Any] = [
            "sources": try await environment.store.sources(configuration: environment.loaded.configuration).map {
                [
                    "name": $0.name, "listed": $0.listed, "tasks": $0.tasks, "done": $0.byState["done", default: 0],
                    "dead": $0.byState["dead", default: 0], "rate": percent($0.successRate), "cost": money($0.costUSD),
                    "dangerous": $0.dangerous.isEmpty
                        ? "none"
                        : $0.dangerous.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }
                            .joined(separator: ", "),
                    "last": time($0.lastActivity?.milliseconds, environment),
                ] as [String: Any]
            }
        ]
        return page.render("sources", title: "Sources", values, live: false)
    }

    static func subjects(_ page: PageRequest) async throws -> Response {
        let (request, environment) = (page.request, page.environment)
        let search = request.uri.queryParameters["search"].map { String($0.prefix(200)) }.flatMap {
            $0.isEmpty ? nil : $0
        }
        let values: [String: Any] = [
            "search": search ?? "",
            "subjects": try await environment.store.subjects(search: search, limit: 200).map {
                [
                    "name": $0.name, "query": query($0.name), "tasks": $0.tasks, "done": $0.done, "dead": $0.dead,
                    "types": $0.types.joined(separator: ", "), "cost": money($0.costUSD),
                    "last": time($0.last.milliseconds, environment),
                ] as [String: Any]
            },
        ]
        return page.render("subjects", title: "Subjects", values, live: false)
    }

    static func subject(_ page: PageRequest) async throws -> Response {
        let (request, environment) = (page.request, page.environment)
        guard let name = request.uri.queryParameters["name"].map(String.init), !name.isEmpty, name.utf8.count <= 1024,
            let history = try await environment.store.subject(name, since: nil, limit: 500)
        else {
            return Page.message(.notFound, "No such subject", "No task names that subject.")
        }
        let values: [String: Any] = [
            "name": history.subject, "count": history.total, "cost": money(history.costUSD),
            "shown": history.tasks.count, "more": history.total > history.tasks.count,
            "tasks": history.tasks.map {
                [
                    "created": time($0.createdAt.milliseconds, environment), "id": $0.id, "type": $0.type,
                    "state": $0.state, "source": $0.source ?? "—", "cost": money($0.costUSD),
                    "decision": $0.decision ?? "—",
                ] as [String: Any]
            },
        ]
        return page.render("subject", title: history.subject, values, live: false)
    }
}

/// The double-submit CSRF token: an `HttpOnly`, `SameSite=Strict` cookie, the same value in every
/// form. It is kept while it lasts, so a page that refreshed on its own keeps working forms.
struct CSRF {
    static let cookieName = "autonomy_csrf"
    let value: String
    let fresh: Bool

    init(_ request: Request) {
        if let existing = request.cookies[Self.cookieName]?.value, existing.count >= 32, existing.count <= 64,
            existing.unicodeScalars.allSatisfy({
                ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "-" || $0 == "_"
            })
        {
            (value, fresh) = (existing, false)
        } else {
            (value, fresh) = (SecretToken.make(), true)
        }
    }

    func matches(_ submitted: String?) -> Bool { submitted.map { !$0.isEmpty && $0 == value } ?? false }

    /// The cookie to set, when this request did not already carry it.
    func setCookie(
        _ request: Request, _ context: ServerContext, _ environment: ServerEnvironment, _ state: ServerState
    ) -> String? {
        guard fresh else { return nil }
        return "\(Self.cookieName)=\(value); Path=/; HttpOnly; SameSite=Strict; Max-Age=43200"
            + (Client.isSecure(request, context, environment, state) ? "; Secure" : "")
    }
}
