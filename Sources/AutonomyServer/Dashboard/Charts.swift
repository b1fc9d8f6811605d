import AutonomyCore
import Foundation

/// Charts as inline SVG made on the server: no script, no style attribute (the page's CSP allows
/// neither), a title for screen readers, and the numbers beside them in text.
enum Charts {
    /// The last 24 hours: done per hour as a line, dead per hour as bars under it.
    static func hours(_ hours: [Overview.Hour]) -> String {
        let width = 240.0
        let height = 48.0
        let peak = Double(max(1, hours.map { max($0.done, $0.dead) }.max() ?? 1))
        let step = width / Double(max(1, hours.count - 1))
        let line = hours.enumerated().map { index, hour in
            String(format: "%.1f,%.1f", Double(index) * step, height - 2 - Double(hour.done) / peak * (height - 4))
        }.joined(separator: " ")
        let bars = hours.enumerated().filter { $0.element.dead > 0 }.map { index, hour in
            let barHeight = max(2, Double(hour.dead) / peak * (height - 4))
            return String(
                format: ##"<rect x="%.1f" y="%.1f" width="4" height="%.1f" fill="#c62828"/>"##,
                max(0, Double(index) * step - 2), height - barHeight, barHeight)
        }.joined()
        let done = hours.map(\.done).reduce(0, +)
        let dead = hours.map(\.dead).reduce(0, +)
        return """
            <svg viewBox="0 0 \(Int(width)) \(Int(height))" width="480" height="96" role="img" aria-labelledby="spark-title">\
            <title id="spark-title">Tasks per hour over the last 24 hours: \(done) done (line), \(dead) dead (bars)</title>\
            <polyline points="\(line)" fill="none" stroke="#2e7d32" stroke-width="2"/>\(bars)</svg>
            """
    }

    /// Spend per day, oldest first, with the cap as a dashed line.
    static func days(_ days: [(day: Int64, costUSD: Double)], cap: Double, _ zone: TimeZone) -> String {
        guard !days.isEmpty else { return "" }
        let width = 240.0
        let height = 48.0
        let peak = max(cap, days.map(\.costUSD).max() ?? 0, 0.01)
        let slot = width / Double(days.count)
        let bars = days.enumerated().map { index, day in
            let barHeight = max(day.costUSD > 0 ? 2 : 0, day.costUSD / peak * (height - 4))
            return String(
                format: ##"<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#1565c0"/>"##,
                Double(index) * slot + 2, height - barHeight, slot - 4, barHeight)
        }.joined()
        let capLine =
            cap > 0
            ? String(
                format: ##"<line x1="0" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#c62828" stroke-dasharray="4 3"/>"##,
                width,
                height - cap / peak * (height - 4), height - cap / peak * (height - 4)) : ""
        let described = days.map {
            "\(Timestamp.format($0.day, timeZone: zone).prefix(10)) \(String(format: "$%.2f", $0.costUSD))"
        }.joined(separator: ", ")
        return """
            <svg viewBox="0 0 \(Int(width)) \(Int(height))" width="480" height="96" role="img" aria-labelledby="spend-title">\
            <title id="spend-title">Spend per day, last \(days.count) days: \(described)</title>\(bars)\(capLine)</svg>
            """
    }
}
