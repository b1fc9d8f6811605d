extension [String] {
    /// `joined(separator:)` for the text a short-lived process builds on its way (SQL column and
    /// state lists): the standard library's runs unspecialised from here, and the first time in a
    /// process it looks its associated types up, a scan of every conformance record (0.5 million
    /// instructions, `bench/HISTORY.md`).
    func joinedPlainly(separator: String) -> String {
        var text = ""
        for (index, part) in enumerated() {
            if index > 0 { text += separator }
            text += part
        }
        return text
    }
}
