// swift-tools-version:6.0
// A libFuzzer harness for the checkpoint reader (MLResHDF5). Not part of the main package's
// build or test run: build and run it with scripts/fuzz-reader-libfuzzer.sh, which passes
// -sanitize=fuzzer,address to every Swift module (so the reader's own code is instrumented
// for coverage, and libFuzzer supplies `main`).
import PackageDescription

let package = Package(
    name: "ReaderFuzzer",
    dependencies: [.package(name: "mlres", path: "../..")],
    targets: [
        .executableTarget(
            name: "ReaderFuzzer",
            dependencies: [.product(name: "MLResHDF5", package: "mlres")],
            // gold crashes linking the sanitizer runtimes; lld ships with the toolchain.
            linkerSettings: [.unsafeFlags(["-use-ld=lld"])]
        ),
    ],
    swiftLanguageModes: [.v5]
)
