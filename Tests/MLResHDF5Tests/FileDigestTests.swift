import Foundation
import Testing
@testable import MLResHDF5

/// SHA-256 (swift-crypto) against FIPS 180-4's published test vectors, and the streamed file
/// digest against the one-shot digest across the 1 MiB chunk boundary.
@Suite struct FileDigestTests {
    @Test func knownVectors() {
        #expect(FileDigest.sha256(Data()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(FileDigest.sha256(Data("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = Data("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(FileDigest.sha256(long) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func streamedFileEqualsOneShot() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        // One million 'a' (FIPS 180-4 vector) and a file crossing the chunk boundary.
        let million = Data(repeating: UInt8(ascii: "a"), count: 1_000_000)
        try million.write(to: URL(fileURLWithPath: dir.file("a.bin")))
        #expect(try FileDigest.sha256(fileAt: dir.file("a.bin"))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let big = Data((0..<((1 << 20) * 2 + 777)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) })
        try big.write(to: URL(fileURLWithPath: dir.file("b.bin")))
        #expect(try FileDigest.sha256(fileAt: dir.file("b.bin")) == FileDigest.sha256(big))
        #expect(checkpointErrorMessage { _ = try FileDigest.sha256(fileAt: dir.file("none")) }?.hasPrefix("cannot open") == true)
    }
}
