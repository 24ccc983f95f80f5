// libFuzzer harness of the checkpoint reader: the input bytes are written to a file and read as a checkpoint, then
// verified. Any outcome but a Checkpoint or a thrown error (a crash, a trap, an ASan report, a
// hang past -timeout) is a finding. The properties of a clean read are checked too: a reader
// must never hand back a network whose tensors disagree with its own architecture.
import Foundation
import MLResHDF5
import MLResModel

/// One scratch file per fuzzing process (in /dev/shm when it exists: no disk traffic).
private let scratch: String = {
    let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    return dir + "/mlres-reader-fuzz-\(getpid()).h5"
}()

/// One input: write it to the scratch file, read it, verify it.
private func testOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Data(bytes: data, count: size)
    guard FileManager.default.createFile(atPath: scratch, contents: bytes) else {
        fatalError("cannot write \(scratch)")
    }
    if let ckpt = try? CheckpointIO.read(path: scratch) {
        // A checkpoint that was accepted must be self-consistent.
        let net = ckpt.network
        for t in net.namedTensors {
            precondition(t.tensor.data.count == t.tensor.shape.reduce(1, *), "\(t.path): data/shape mismatch")
        }
        precondition(net.stages.allSatisfy { !$0.blocks.isEmpty }, "accepted a network with an empty stage")
    }
    _ = try? CheckpointIO.verify(path: scratch)
    return 0
}

/// libFuzzer's driver entry (compiler-rt, `-sanitize=fuzzer`): SwiftPM links executables with
/// `main` bound to this module's entry point, so the harness starts the driver itself rather
/// than using libFuzzer's `main`.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

@main
enum ReaderFuzzer {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { testOneInput($0, $1) })
    }
}
