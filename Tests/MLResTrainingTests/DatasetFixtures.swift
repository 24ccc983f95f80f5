import Foundation
import MLResTestSupport
@testable import MLResData
@testable import MLResTraining

/// The committed fixtures written by scripts/make_dataset_fixtures.py, and the formulas that
/// script documents (repeated here so the tests check exact values).
enum Fixtures {
    static let root: String = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/datasets").path
    }()
    static func dir(_ name: String) -> String { root + "/" + name }

    static func cifar10Label(_ g: Int, _ s: Int) -> Int32 { Int32((g * 3 + s) % 10) }
    static func cifar10Pixel(_ g: Int, _ c: Int, _ y: Int, _ x: Int, _ s: Int) -> UInt8 {
        UInt8((g * 31 + c * 67 + y * 5 + x * 3 + s * 101) % 256)
    }
    static func cifar100Coarse(_ g: Int, _ s: Int) -> Int32 { Int32((g + s) % 20) }
    static func cifar100Fine(_ g: Int, _ s: Int) -> Int32 { Int32((g * 7 + 3 + s) % 100) }
    static func cifar100Pixel(_ g: Int, _ c: Int, _ y: Int, _ x: Int, _ s: Int) -> UInt8 {
        UInt8((g * 29 + c * 53 + y * 7 + x * 2 + s * 89) % 256)
    }
    static func stlPixel(_ g: Int, _ c: Int, _ y: Int, _ x: Int, _ s: Int) -> UInt8 {
        UInt8((g * 13 + c * 71 + y * 3 + x * 7 + s * 37) % 256)
    }
    static func stlLabelOnDisk(_ g: Int, _ s: Int) -> Int { (g + s) % 10 + 1 }
    static func idxLabel(_ g: Int, _ s: Int) -> Int32 { Int32((g * 7 + s) % 10) }
    static func idxPixel(_ g: Int, _ y: Int, _ x: Int, _ s: Int) -> UInt8 {
        UInt8((g * 17 + y * 3 + x * 5 + s * 59) % 256)
    }

    /// A fresh temporary copy of a fixture directory (for corrupting files in error tests).
    static func scratchCopy(of name: String) throws -> String {
        let dst = FileManager.default.temporaryDirectory
            .appendingPathComponent("mlres-ds-\(name)-\(UUID().uuidString)").path
        try FileManager.default.copyItem(atPath: dir(name), toPath: dst)
        return dst
    }

    /// An empty temporary directory.
    static func emptyDir() throws -> String { try scratchFolder("empty") }

    static func readBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path)!) }
    static func writeBytes(_ path: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
    static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }
}

/// The error a throwing expression threw, or nil.
func caught<T>(_ body: () throws -> T) -> Error? {
    do { _ = try body(); return nil } catch { return error }
}

/// The message of a thrown error ("" when nothing was thrown).
func message<T>(_ body: () throws -> T) -> String {
    caught(body).map { "\($0)" } ?? ""
}
