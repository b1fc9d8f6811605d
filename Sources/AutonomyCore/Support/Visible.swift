/// Text as a person can safely read it: control, format (bidi overrides, zero-width) and other
/// invisible characters are shown as `\u{…}` escapes instead of acting on a terminal, an alert or a
/// page. Used wherever a payload, subject, source, stderr or error text is shown.
public enum Visible {
    public static func text(_ value: String) -> String {
        var result = ""
        for scalar in value.unicodeScalars {
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned:
                result += "\\u{\(String(scalar.value, radix: 16))}"
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// The same, line by line: newlines stay newlines, everything else invisible is escaped.
    public static func lines(_ value: String) -> String {
        value.split(separator: "\n", omittingEmptySubsequences: false).map { text(String($0)) }.joined(separator: "\n")
    }
}
