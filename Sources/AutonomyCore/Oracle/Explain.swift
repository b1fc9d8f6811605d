import Foundation
import GRDB

extension AutonomyStore {
    /// `audit.explain`: a short plain-language summary of a report from the model gateway (tier
    /// `free`, not critical), saved with the run. The prompt carries the headline and the findings'
    /// kinds, subjects, numbers and signatures, never a payload. Never fails: at the daily cap,
    /// with no free model, or when the model does not answer, the text says why there is none.
    public func explain(_ report: AuditReport, gateway: ModelGateway) async -> String {
        let committed = try? budget(settings: gateway.settings, timeZone: gateway.timeZone, now: gateway.clock.now())
            .committedUSD
        let text = await Self.explanation(report, gateway: gateway, committedUSD: committed)
        _ = try? write("save the audit's summary") { db in
            try db.execute(sql: "UPDATE audit_runs SET explanation = ? WHERE id = ?", arguments: [text, report.runID])
        }
        return text
    }

    /// The summary's text (or why there is none), with `committedUSD` the budget's spend so far.
    public static func explanation(_ report: AuditReport, gateway: ModelGateway, committedUSD: Double?) async
        -> String
    {
        let text: String
        if let committedUSD, gateway.settings.dailyCapUSD > 0, committedUSD >= gateway.settings.dailyCapUSD {
            text = "no summary: the model budget is at its daily cap; the findings below are the report"
        } else {
            do {
                let response = try await gateway.complete(
                    LLMRequest(
                        prompt: Self.explainPrompt(report), system: Self.explainSystem, tier: .free, maxTokens: 300))
                let answer = response.text.trimmingCharacters(in: .whitespacesAndNewlines)
                // Said as what it is: a model's reading, which the findings below it can confirm.
                text =
                    answer.isEmpty
                    ? "no summary: the model answered with nothing"
                    : "summary by \(response.model) (a model's reading of the findings below): "
                        + String(answer.prefix(2000))
            } catch {
                switch error {
                case .noModels: text = "no summary: no free model is configured (gateway.models, tier free)"
                case .budgetExhausted: text = "no summary: the model budget is at its daily cap"
                case .allFailed: text = "no summary: the model did not answer (\(error))"
                }
            }
        }
        return text
    }

    static let explainSystem =
        "You summarise an operations audit for a busy operator: at most five short sentences of plain language,"
        + " most urgent first. Use only the facts given; do not invent causes or numbers."

    /// Numbers and signatures only: the headline, each finding's severity, kind, subject and title,
    /// and the proposals' actions.
    static func explainPrompt(_ report: AuditReport) -> String {
        var lines = [
            "Audit over \(Timestamp.format(report.windowStart.milliseconds)) to \(Timestamp.format(report.windowEnd.milliseconds)).",
            report.headline, "", "Findings, worst first:",
        ]
        lines += report.findings.prefix(40).map { "- [\($0.severity.rawValue)] \($0.kind.rawValue): \($0.title)" }
        if report.findings.count > 40 { lines.append("- and \(report.findings.count - 40) more") }
        let proposed = report.proposals.filter { $0.status == .proposed }
        if !proposed.isEmpty {
            lines += ["", "Fix proposals waiting for the operator's approval:"]
            lines += proposed.map { "- \($0.summary) for \($0.finding.rawValue)" }
        }
        return lines.joined(separator: "\n")
    }
}
