import Foundation
import MLResDistributed

// Test helper for DistributedTests (run as `mpirun -np N mlres-mpi-probe MODE`): every rank
// exercises MLResDistributed's collectives on inputs that depend on its rank and prints one
// JSON object with what it got; the test recomputes the expected values independently.
//   collectives  every collective once (and "launched": false when started without mpirun)
//   abort [DIR]  rank size-1 writes DIR/aborting-rank-R, then calls abort(code: 3) while the
//                others wait in a barrier
//   die          rank size-1 kills itself with SIGKILL while the others wait in a barrier

let mode = CommandLine.arguments.dropFirst().first ?? "collectives"
guard let world = try MPIProcessGroup.joinIfLaunched() else {
    print("{\"launched\":false}")
    exit(0)
}
let (r, n) = (world.rank, world.size)
switch mode {
case "abort":
    if r == n - 1 {
        // A file, not a stderr line, records who aborted: mpirun may kill the job before it
        // forwards the rank's output.
        if CommandLine.arguments.count > 2 {
            FileManager.default.createFile(atPath: CommandLine.arguments[2] + "/aborting-rank-\(r)", contents: Data("3".utf8))
        }
        world.abort(code: 3)
    }
    world.barrier()
    print("{\"rank\":\(r),\"passed_barrier\":true}")
case "die":
    if r == n - 1 { kill(getpid(), SIGKILL) }
    world.barrier()
    print("{\"rank\":\(r),\"passed_barrier\":true}")
default:
    // Float sums: a buffer large enough for Open MPI's large-message algorithms (4 MB).
    var f = (0 ..< 1_000_003).map { Float(($0 % 1000) * (r + 1)) + 0.25 }
    world.allreduceSum(&f)
    var d = [Double(r) + 0.5, -Double(r * r)]
    world.allreduceSum(&d)
    var s = [r + 1, 1 << 40]
    world.allreduceSum(&s)
    var mx = [r, -r], mn = [r, -r]
    world.allreduceMax(&mx); world.allreduceMin(&mn)
    let anyLast = world.any(r == n - 1), anyNone = world.any(false)
    // Broadcast from the last rank: its bytes (length 3 + its rank) replace everyone's.
    var bytes = r == n - 1 ? (0 ..< (3 + r)).map { UInt8(200 + $0) } : [1]
    world.broadcast(&bytes, root: n - 1)
    var words: [UInt64] = [UInt64(r), UInt64.max - UInt64(r)]
    world.broadcast(&words, root: 0)
    world.barrier()
    let fSample = [0, 1, 999, 1000, 1_000_002].map { Double(f[$0]) }
    let fTotal = f.reduce(0.0) { $0 + Double($1) }
    let obj: [String: Any] = [
        "launched": true, "rank": r, "size": n, "library": MPIProcessGroup.libraryVersion,
        "float_sample": fSample, "float_total": fTotal, "double": d, "int_sum": s, "max": mx, "min": mn,
        "any_last": anyLast, "any_none": anyNone, "bytes": bytes.map { Int($0) }, "words": words.map { String($0) },
    ]
    let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
world.finalize()
