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
    var hexString: String {
        withUnsafeBytes { bytes in
            String(unsafeUninitializedCapacity: bytes.count * 2) { text in
                for (index, byte) in bytes.enumerated() {
                    text[2 * index] = hexDigit(byte >> 4)
                    text[2 * index + 1] = hexDigit(byte & 0x0f)
                }
                return bytes.count * 2
            }
        }
    }
}

func hexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 + nibble : 0x57 + nibble }
