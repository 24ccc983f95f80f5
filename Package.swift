// swift-tools-version:6.0
// mlres: multi-level residual networks (Chang et al., ICLR 2018) in Swift.
import PackageDescription

let package = Package(
    name: "mlres",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "MLResModel", targets: ["MLResModel"]),
        // For the checkpoint reader's libFuzzer harness (Fuzz/ReaderFuzzer, a package of its own).
        .library(name: "MLResHDF5", targets: ["MLResHDF5"]),
        .executable(name: "mlres-train", targets: ["mlres-train"]),
        .executable(name: "mlres-surgery", targets: ["mlres-surgery"]),
        .executable(name: "mlres-eval", targets: ["mlres-eval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Already in the graph through Hummingbird; named so the server can use ServiceGroup
        // (graceful shutdown) and NIOCore (the bound port) directly.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.0.0"),
        // The protobuf runtime for ONNX export (the generated onnx.pb.swift is committed; the
        // protoc plugin is not part of the build, see docs/interop.md).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // SHA-256 of checkpoint files and tensors (BoringSSL's, with the CPU's SHA extensions).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        // Property-based testing in Swift Testing (the JSON parser's property tests).
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        // NIOHTTPTypes: the HTTP parts the server's request-deadline channel handler sees.
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
    ],
    targets: [
        // System libraries (Debian packages): the only C the project touches.
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev", "zlib1g-dev"])]),
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),

        // Pure Swift: the network as data, tensors, checkpoint value, surgery.
        .target(name: "MLResModel"),
        // The only module that calls HDF5: checkpoint format v1 reader/writer.
        .target(name: "MLResHDF5", dependencies: [
            "MLResModel", "CHDF5", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The only module that calls oneDNN: forward/backward, SGD.
        .target(name: "MLResEngine", dependencies: ["MLResModel", "CDNNL"]),
        // Datasets: readers (CIFAR, STL-10, IDX), augmentation, standardisation, batch loaders;
        // the only module that calls zlib (`Inflate`, also used by the server for request bodies).
        .target(name: "MLResData", dependencies: ["MLResModel", "CZlib"]),
        // The only module that calls MPI: the process group of an mpirun job (data-parallel training).
        .target(name: "MLResDistributed", dependencies: ["CMPI"]),
        // Scoring (the one scoring loop), residual norms, lesion studies.
        .target(name: "MLResAnalysis",
                dependencies: ["MLResModel", "MLResHDF5", "MLResEngine", "MLResData"]),
        // Learning-rate cycle, multi-level cycle plan, trainer (scores through MLResAnalysis).
        .target(name: "MLResTraining",
                dependencies: ["MLResModel", "MLResHDF5", "MLResEngine", "MLResData", "MLResAnalysis"]),
        // Exchange with the ecosystem: ONNX export, safetensors state_dicts (PyTorch names).
        .target(name: "MLResInterop", dependencies: [
            "MLResModel",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ], exclude: ["ONNX/onnx.proto", "ONNX/README.md"]),
        // HTTP inference server (Open Inference Protocol v2) with dynamic batching.
        .target(name: "MLResServer", dependencies: [
            "MLResModel", "MLResHDF5", "MLResEngine", "MLResData", "MLResAnalysis",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),

        // What the three executables share: exit-status contract, error line, list flags,
        // closed flag choices (ExpressibleByArgument).
        .target(name: "MLResCLI", dependencies: [
            "MLResModel", "MLResData",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Thin executables.
        .executableTarget(name: "mlres-train", dependencies: [
            "MLResModel", "MLResHDF5", "MLResEngine", "MLResData", "MLResAnalysis", "MLResTraining", "MLResDistributed", "MLResCLI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "mlres-surgery", dependencies: [
            "MLResModel", "MLResHDF5", "MLResInterop", "MLResCLI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "mlres-eval", dependencies: [
            "MLResModel", "MLResHDF5", "MLResEngine", "MLResData", "MLResAnalysis",
            "MLResServer", "MLResCLI",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Test helper run under mpirun by DistributedTests: exercises every collective.
        .executableTarget(name: "mlres-mpi-probe", dependencies: ["MLResDistributed"], path: "Tests/MPIProbe"),

        // What every test target shares: the float64 reference network, the test-network
        // builder, the closeness check, and the launcher of the built executables.
        .target(name: "MLResTestSupport", dependencies: ["MLResModel"], path: "Tests/MLResTestSupport"),

        .testTarget(name: "MLResModelTests", dependencies: ["MLResModel", "MLResTestSupport"]),
        .testTarget(name: "MLResHDF5Tests", dependencies: ["MLResModel", "MLResHDF5", "CHDF5", "MLResTestSupport"],
                    resources: []),
        .testTarget(name: "MLResEngineTests",
                    dependencies: ["MLResModel", "MLResEngine", "MLResHDF5", "MLResTestSupport"]),
        .testTarget(name: "MLResTrainingTests",
                    dependencies: ["MLResModel", "MLResData", "MLResTraining", "MLResHDF5", "MLResEngine", "MLResAnalysis",
                                   "MLResCLI", "MLResTestSupport"]),
        .testTarget(name: "MLResAnalysisTests",
                    dependencies: ["MLResAnalysis", "MLResModel", "MLResHDF5", "MLResEngine", "MLResData",
                                   "MLResTestSupport"]),
        .testTarget(name: "MLResInteropTests",
                    dependencies: ["MLResInterop", "MLResModel", "MLResHDF5", "MLResTestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["MLResModel", "MLResHDF5", "MLResTestSupport"]),
        .testTarget(name: "DistributedTests",
                    dependencies: ["MLResModel", "MLResHDF5", "MLResTraining", "MLResTestSupport"]),
        .testTarget(name: "MLResServerTests",
                    dependencies: ["MLResServer", "MLResModel", "MLResHDF5", "MLResEngine",
                                   "MLResData", "MLResAnalysis", "MLResTestSupport",
                                   .product(name: "PropertyBased", package: "swift-property-based")],
                    exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v5]
)
