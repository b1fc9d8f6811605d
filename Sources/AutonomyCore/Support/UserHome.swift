import Foundation

/// The user's home folder as a shell knows it: `$HOME` when it is set, else the user database's
/// entry (what `NSHomeDirectory()` reads, which ignores `$HOME`).
public enum UserHome {
    public static var path: String {
        if let home = ProcessEnvironment.variables["HOME"], home.hasPrefix("/") { return home }
        return NSHomeDirectory()
    }
}
