import Foundation

/// The process's environment, read once.
///
/// `ProcessInfo.processInfo.environment` builds a new dictionary from `environ` on every read:
/// about 350,000 instructions in a fresh process, and one `enqueue` read it six times. Nothing in
/// autonomy changes its own environment, so one reading serves the whole run.
public enum ProcessEnvironment {
    public static let variables: [String: String] = ProcessInfo.processInfo.environment
}
