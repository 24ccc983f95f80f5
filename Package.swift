// swift-tools-version:6.0
// mlres: multi-level residual networks (Chang et al., ICLR 2018) in Swift.
import PackageDescription

let package = Package(
    name: "mlres",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "MLResModel", targets: ["MLResModel"]),
        .executable(name: "mlres-train", targets: ["mlres-train"]),
        .executable(name: "mlres-surgery", targets: ["mlres-surgery"]),
        .executable(name: "mlres-eval", targets: ["mlres-eval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries (Debian packages): the only C the project touches.
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5-serial",
                       providers: [.apt(["libhdf5-dev", "zlib1g-dev"])]),
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),

        // Pure Swift: the network as data, tensors, checkpoint value, surgery.
        .target(name: "MLResModel"),
        // The only module that calls HDF5: checkpoint format v1 reader/writer.
        .target(name: "MLResHDF5", dependencies: ["MLResModel", "CHDF5"]),
        // The only module that calls oneDNN: forward/backward, SGD.
        .target(name: "MLResEngine", dependencies: ["MLResModel", "CDNNL"]),
        // Datasets, augmentation, learning-rate cycle, multi-level schedule, trainer.
        .target(name: "MLResTraining",
                dependencies: ["MLResModel", "MLResHDF5", "MLResEngine", "CZlib"]),
        // Scoring, residual norms, lesion studies.
        .target(name: "MLResAnalysis",
                dependencies: ["MLResModel", "MLResHDF5", "MLResEngine", "MLResTraining"]),

        // Thin executables.
        .executableTarget(name: "mlres-train", dependencies: [
            "MLResModel", "MLResHDF5", "MLResEngine", "MLResTraining",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "mlres-surgery", dependencies: [
            "MLResModel", "MLResHDF5",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "mlres-eval", dependencies: [
            "MLResModel", "MLResHDF5", "MLResEngine", "MLResTraining", "MLResAnalysis",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "MLResModelTests", dependencies: ["MLResModel"]),
        .testTarget(name: "MLResHDF5Tests", dependencies: ["MLResModel", "MLResHDF5"],
                    resources: []),
        .testTarget(name: "MLResEngineTests",
                    dependencies: ["MLResModel", "MLResEngine", "MLResHDF5"]),
        .testTarget(name: "MLResTrainingTests",
                    dependencies: ["MLResModel", "MLResTraining", "MLResHDF5", "MLResEngine"]),
        .testTarget(name: "MLResAnalysisTests",
                    dependencies: ["MLResAnalysis", "MLResModel", "MLResHDF5", "MLResEngine", "MLResTraining"]),
        .testTarget(name: "CLITests", dependencies: ["MLResModel", "MLResHDF5"]),
    ],
    swiftLanguageModes: [.v5]
)
