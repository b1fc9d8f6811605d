import Foundation

/// Whether a file that grants power (the configuration, `allowed_signers`) can be changed by
/// someone other than root or the user reading it — the check sshd's StrictModes makes.
public enum FileTrust {
    /// The system user the shipped units run the worker (and its handlers) as.
    public static let workerUser = "autonomy"

    /// Checks the file and every folder above it: each must be owned by root or the running user,
    /// and not writable by group or others (a folder with the sticky bit, such as /tmp, may be:
    /// there nobody can replace another's file). The worker's own user is held to root alone: a
    /// file it owns is one every handler it runs can rewrite.
    ///
    /// - Throws: `FileTrustError` naming the file or folder and the command that fixes it.
    public static func check(
        _ path: String, what: String, user: uid_t = geteuid(), isWorker: (uid_t) -> Bool = FileTrust.isWorker
    ) throws(FileTrustError) {
        // The folders of the path as written (a symbolic link can be swapped where it stands), then
        // the file it leads to and that file's folders.
        let written = ConfigLoader.absolutePath(path)
        try checkFolders(above: written, what: what, user: user, isWorker: isWorker)
        guard let resolved = realpath(path, nil) else {
            throw FileTrustError(message: "\(what) \(path): \(String(cString: strerror(errno)))")
        }
        let real = String(cString: resolved)
        free(resolved)
        var info = stat()
        guard stat(real, &info) == 0 else {
            throw FileTrustError(message: "\(what) \(real): \(String(cString: strerror(errno)))")
        }
        try judge(real, info, what: what, user: user, folder: false, isWorker: isWorker)
        if real != written { try checkFolders(above: real, what: what, user: user, isWorker: isWorker) }
    }

    private static func checkFolders(
        above path: String, what: String, user: uid_t, isWorker: (uid_t) -> Bool
    ) throws(FileTrustError) {
        var info = stat()
        var folder = (path as NSString).deletingLastPathComponent
        while !folder.isEmpty {
            guard stat(folder, &info) == 0 else { break }
            try judge(folder, info, what: "the folder holding \(what)", user: user, folder: true, isWorker: isWorker)
            if folder == "/" { break }
            folder = (folder as NSString).deletingLastPathComponent
        }
    }

    private static func judge(
        _ path: String, _ info: stat, what: String, user: uid_t, folder: Bool, isWorker: (uid_t) -> Bool
    ) throws(FileTrustError) {
        if info.st_uid != 0 && info.st_uid == user && isWorker(user) {
            throw FileTrustError(
                message:
                    "\(what) \(path) is owned by the worker user \(workerUser) (uid \(user)): every handler it runs could change it; make root own it (sudo chown root \(path))"
            )
        }
        if info.st_uid != 0 && info.st_uid != user {
            throw FileTrustError(
                message:
                    "\(what) \(path) is owned by uid \(info.st_uid), not by root or you (uid \(user)): someone else could change it; make root own it (chown root \(path))"
            )
        }
        let sticky = folder && info.st_mode & S_ISVTX != 0
        if info.st_mode & (S_IWGRP | S_IWOTH) != 0 && !sticky {
            throw FileTrustError(
                message:
                    "\(what) \(path) is writable by its group or by everyone: anyone there could change it; run chmod go-w \(path)"
            )
        }
    }
}

extension FileTrust {
    /// Whether `user` is the worker's system user. Asked only of a file its reader owns (root owns
    /// an installed configuration), so the usual run never reads the user database.
    public static func isWorker(_ user: uid_t) -> Bool {
        guard user != 0, let worker = getpwnam(workerUser) else { return false }
        return worker.pointee.pw_uid == user
    }
}

/// A file that grants power is not safe to read.
public struct FileTrustError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
