import Crypto
import Foundation

extension String {
    /// The SHA-256 of the UTF-8 bytes, as 64 lowercase hex digits.
    public var sha256Hex: String {
        var text = self
        return text.withUTF8 { SHA256.hash(data: UnsafeRawBufferPointer($0)) }.hexString
    }
}

extension ContiguousBytes {
    /// The bytes as lowercase hex digits, two a byte (a digest: 64 for SHA-256).
    var hexString: String { withUnsafeBytes { hexDigits(of: $0) } }
}

/// `bytes` as lowercase hex digits, two a byte, with a `-` before each byte index in `dashesBefore`.
private func hexDigits(of bytes: UnsafeRawBufferPointer, dashesBefore dashes: [Int] = []) -> String {
    String(unsafeUninitializedCapacity: bytes.count * 2 + dashes.count) { text in
        var at = 0
        for (index, byte) in bytes.enumerated() {
            if !dashes.isEmpty, dashes.contains(index) {
                text[at] = 0x2d  // "-"
                at += 1
            }
            text[at] = hexDigit(byte >> 4)
            text[at + 1] = hexDigit(byte & 0x0f)
            at += 2
        }
        return at
    }
}

func hexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 + nibble : 0x57 + nibble }

/// Where a UUID's text has its dashes: before bytes 4, 6, 8 and 10.
private let uuidDashes = [4, 6, 8, 10]

/// A fresh random token in a UUID's form (version 4, lowercase): 122 random bits from the system's
/// generator (`getrandom`). Foundation's `UUID()` opened, read and closed `/dev/urandom` for each
/// one, and a draining worker makes one a task (its lease).
func randomToken() -> String {
    var generator = SystemRandomNumberGenerator()
    var words = (generator.next() as UInt64, generator.next() as UInt64)
    return withUnsafeMutableBytes(of: &words) { bytes in
        bytes[6] = (bytes[6] & 0x0f) | 0x40  // version 4
        bytes[8] = (bytes[8] & 0x3f) | 0x80  // the RFC 4122 variant
        return hexDigits(of: UnsafeRawBufferPointer(bytes), dashesBefore: uuidDashes)
    }
}

extension Data {
    /// The text's UTF-8 bytes. `Data(text.utf8)` gives the same, but its generic initialiser asks
    /// the runtime whether the view is contiguous bytes: on its first use in a process, a scan of
    /// every conformance record in the executable (about 0.45 million instructions).
    public init(utf8 text: String) {
        var text = text
        self = text.withUTF8 { Data(buffer: $0) }
    }
}
