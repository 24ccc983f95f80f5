/// What the command-line flags select: `--dataset`, `--data-dir`, `--labels coarse`,
/// `--train-subset N`, `--test-subset N` (and the seed used for subsets, if any).
/// ``load()`` resolves the default directory and reads both splits, validating everything
/// before any training starts.
public struct DatasetSelection: Sendable, Equatable, Codable {
    public var kind: DatasetKind
    public var dataDirectory: String?
    public var coarseLabels: Bool
    public var trainSubset: Int?
    public var testSubset: Int?
    /// nil: subsets are the first N images; a seed: a seeded sample (see ``Dataset/subset(_:seed:flag:)``).
    public var subsetSeed: UInt64?

    public init(kind: DatasetKind, dataDirectory: String? = nil, coarseLabels: Bool = false,
                trainSubset: Int? = nil, testSubset: Int? = nil, subsetSeed: UInt64? = nil) {
        self.kind = kind; self.dataDirectory = dataDirectory; self.coarseLabels = coarseLabels
        self.trainSubset = trainSubset; self.testSubset = testSubset; self.subsetSeed = subsetSeed
    }

    /// The same with a ``LabelSet`` (`--labels`).
    public init(kind: DatasetKind, dataDirectory: String? = nil, labels: LabelSet,
                trainSubset: Int? = nil, testSubset: Int? = nil, subsetSeed: UInt64? = nil) {
        self.init(kind: kind, dataDirectory: dataDirectory, coarseLabels: labels == .coarse,
                  trainSubset: trainSubset, testSubset: testSubset, subsetSeed: subsetSeed)
    }

    /// `--labels`: coarse or fine.
    public var labels: LabelSet { coarseLabels ? .coarse : .fine }

    /// `--data-dir`, or the dataset's default (Fashion-MNIST: the Debian package's directory).
    public func resolvedDirectory() throws -> String {
        if let d = dataDirectory { return d }
        if let d = kind.defaultDataDirectory { return d }
        let files: String
        switch kind {
        case .cifar10: files = "data_batch_1.bin ... data_batch_5.bin, test_batch.bin"
        case .cifar100: files = "train.bin, test.bin"
        case .stl10: files = "train_X.bin, train_y.bin, test_X.bin, test_y.bin"
        case .fashionMNIST: files = "train-images-idx3-ubyte.gz ..."
        }
        throw DatasetError.invalidRequest(detail: "--dataset \(kind.rawValue) needs --data-dir DIR, the folder with \(files)")
    }

    /// Reads one split, applying its subset.
    public func load(_ split: Split) throws -> Dataset {
        if coarseLabels && kind != .cifar100 {
            throw DatasetError.invalidRequest(detail: "--labels coarse applies to cifar100 only, not \(kind.rawValue)")
        }
        let ds = try kind.load(split, from: try resolvedDirectory(), coarseLabels: coarseLabels)
        let n = split == .train ? trainSubset : testSubset
        guard let n else { return ds }
        return try ds.subset(n, seed: subsetSeed, flag: split == .train ? "--train-subset" : "--test-subset")
    }

    /// Both splits, checked to have the same image shape and classes.
    public func load() throws -> (train: Dataset, test: Dataset) {
        let train = try load(.train), test = try load(.test)
        guard train.imageShape == test.imageShape, train.classNames == test.classNames else {
            throw DatasetError.mismatch(detail: "training images are \(train.imageShape) but test images are \(test.imageShape)")
        }
        return (train, test)
    }
}
