import Foundation
import Testing

@testable import AutonomyCore

@Suite struct RandomTokenTests {
    /// A lease token is a version-4 UUID as Foundation reads one, and never the same twice.
    @Test func aTokenIsAVersionFourUUIDAndNeverRepeats() throws {
        var seen: Set<String> = []
        for _ in 0..<2_000 {
            let token = randomToken()
            let parsed = try #require(UUID(uuidString: token), "\(token)")
            #expect(parsed.uuidString.lowercased() == token)
            let parts = token.split(separator: "-").map(\.count)
            #expect(parts == [8, 4, 4, 4, 12])
            let characters = Array(token)
            #expect(characters[14] == "4")  // the version
            #expect("89ab".contains(characters[19]))  // the RFC 4122 variant
            seen.insert(token)
        }
        #expect(seen.count == 2_000)
    }
}
