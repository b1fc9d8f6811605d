import Crypto
import Foundation

extension String {
    /// The SHA-256 of the UTF-8 bytes, as 64 lowercase hex digits.
    public var sha256Hex: String {
        SHA256.hash(data: Data(utf8)).hexString
    }
}

extension Sequence where Element == UInt8 {
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        for byte in self {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
