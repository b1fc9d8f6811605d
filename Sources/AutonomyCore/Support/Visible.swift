/// Text as a person can safely read it: control, format (bidi overrides, zero-width) and other
/// invisible characters are shown as `\u{…}` escapes instead of acting on a terminal, an alert or a
/// page. Used wherever a payload, subject, source, stderr or error text is shown.
public enum Visible {
    public static func text(_ value: String) -> String {
        var result = ""
        for scalar in value.unicodeScalars {
            if hides(scalar) {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// A whole page as it leaves the server: what a payload, a result or an error put in it that
    /// would not show as itself (a bidi override turning "1000000" into "0000001", invisible tag
    /// characters, line separators) is shown escaped; the page's own line breaks and tabs stay.
    public static func page(_ html: String) -> String {
        // Most pages hold nothing to escape: a pass that only reads, and the page goes as it is.
        func kept(_ scalar: Unicode.Scalar) -> Bool {
            scalar.value == 0x0a || scalar.value == 0x09 || scalar.value == 0x0d || !hides(scalar)
        }
        if html.unicodeScalars.allSatisfy(kept) { return html }
        var result = ""
        result.reserveCapacity(html.utf8.count)
        for scalar in html.unicodeScalars {
            if kept(scalar) {
                result.unicodeScalars.append(scalar)
            } else {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            }
        }
        return result
    }

    /// Whether a character would not show as itself: control, format (bidi, zero-width), line
    /// and paragraph separators, private use, unassigned, and the default-ignorable ones
    /// (variation selectors, U+034F).
    private static func hides(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.value >= 0x20 && scalar.value < 0x7f { return false }
        if scalar.properties.isDefaultIgnorableCodePoint { return true }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned:
            return true
        default:
            return false
        }
    }

    /// The same, line by line: newlines stay newlines, everything else invisible is escaped.
    public static func lines(_ value: String) -> String {
        value.split(separator: "\n", omittingEmptySubsequences: false).map { text(String($0)) }.joined(separator: "\n")
    }
}
