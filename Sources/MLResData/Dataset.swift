import Foundation
import MLResModel

/// One split of an image-classification dataset held in memory as the files store it:
/// uint8 pixels in `[N, C, H, W]` row-major order and one integer label per image.
public struct Dataset: Sendable, Equatable {
    /// Pixels, `count * channels * height * width` bytes, image after image, CHW inside each.
    public var images: [UInt8]
    /// Labels in `0 ..< classNames.count`.
    public var labels: [Int32]
    public var channels: Int
    public var height: Int
    public var width: Int
    /// Human-readable class names, indexed by label.
    public var classNames: [String]

    public init(images: [UInt8], labels: [Int32], channels: Int, height: Int, width: Int,
                classNames: [String]) {
        precondition(images.count == labels.count * channels * height * width,
                     "dataset: \(images.count) pixel bytes for \(labels.count) images of \(channels)x\(height)x\(width)")
        self.images = images; self.labels = labels
        self.channels = channels; self.height = height; self.width = width
        self.classNames = classNames
    }

    /// Number of images.
    public var count: Int { labels.count }
    /// Number of classes.
    public var numClasses: Int { classNames.count }
    /// Bytes of one image (`C*H*W`).
    public var imageSize: Int { channels * height * width }
    /// `[N, C, H, W]`.
    public var shape: [Int] { [count, channels, height, width] }
    /// `[C, H, W]`, the network's input shape.
    public var imageShape: [Int] { [channels, height, width] }

    /// The pixels of image `i` (CHW).
    public func image(_ i: Int) -> ArraySlice<UInt8> {
        images[(i * imageSize) ..< ((i + 1) * imageSize)]
    }

    /// The images at `indices`, in that order.
    public func selecting(_ indices: [Int]) -> Dataset {
        let size = imageSize
        var px = [UInt8](repeating: 0, count: indices.count * size)
        var lb = [Int32](repeating: 0, count: indices.count)
        images.withUnsafeBufferPointer { src in
            px.withUnsafeMutableBufferPointer { dst in
                for (k, i) in indices.enumerated() {
                    precondition(i >= 0 && i < count, "image index \(i) out of 0..<\(count)")
                    (dst.baseAddress! + k * size).update(from: src.baseAddress! + i * size, count: size)
                    lb[k] = labels[i]
                }
            }
        }
        return Dataset(images: px, labels: lb, channels: channels, height: height, width: width,
                       classNames: classNames)
    }

    /// A subset of `n` images for quick runs (`--train-subset N`, `--test-subset N`).
    ///
    /// - With `seed == nil`: the first `n` images in file order (the official files are already
    ///   shuffled, so this is close to class-balanced for CIFAR and Fashion-MNIST; STL-10's
    ///   files are shuffled too).
    /// - With a seed: `n` distinct images drawn uniformly with ``SplitMix64`` (a partial
    ///   Fisher–Yates), then kept in file order. The same seed always gives the same subset.
    ///
    /// `n` larger than the split is an error; `n == count` returns the dataset unchanged.
    public func subset(_ n: Int, seed: UInt64? = nil, flag: String = "subset") throws -> Dataset {
        guard n > 0 else { throw DatasetError.invalidRequest(detail: "\(flag) must be positive, got \(n)") }
        guard n <= count else {
            throw DatasetError.invalidRequest(detail: "\(flag) \(n) is larger than the \(count) images available")
        }
        if n == count { return self }
        guard let seed else { return selecting(Array(0 ..< n)) }
        var rng = SplitMix64(seed: seed)
        var idx = Array(0 ..< count)
        for i in 0 ..< n {
            let j = i + rng.nextInt(below: count - i)
            idx.swapAt(i, j)
        }
        return selecting(idx[0 ..< n].sorted())
    }

    /// Number of images per class (index = label).
    public var classCounts: [Int] {
        var c = [Int](repeating: 0, count: numClasses)
        for l in labels { c[Int(l)] += 1 }
        return c
    }
}

/// Train or test split.
public enum Split: String, Sendable, CaseIterable {
    case train, test
}

/// The paper's datasets (CIFAR-10, CIFAR-100, STL-10) and Fashion-MNIST, with their
/// per-dataset training defaults. The raw value is the `--dataset` flag's spelling.
public enum DatasetKind: String, Sendable, CaseIterable, Codable {
    case cifar10 = "cifar10"
    case cifar100 = "cifar100"
    case stl10 = "stl10"
    case fashionMNIST = "fashion-mnist"

    /// Parses a `--dataset` value (also accepts `fashion_mnist`, `fashionmnist`, any case).
    public init?(flag: String) {
        let f = flag.lowercased()
        if let k = DatasetKind(rawValue: f) { self = k; return }
        switch f {
        case "fashion_mnist", "fashionmnist": self = .fashionMNIST
        case "cifar-10": self = .cifar10
        case "cifar-100": self = .cifar100
        case "stl-10": self = .stl10
        default: return nil
        }
    }

    /// Image shape `[C, H, W]`.
    public var imageShape: [Int] {
        switch self {
        case .cifar10, .cifar100: return [3, 32, 32]
        case .stl10: return [3, 96, 96]
        case .fashionMNIST: return [1, 28, 28]
        }
    }

    /// Number of classes with the default labels (CIFAR-100: fine, 100).
    public var numClasses: Int { classNames(coarse: false).count }

    /// Class names by label; `coarse` selects CIFAR-100's 20 superclasses.
    public func classNames(coarse: Bool = false) -> [String] {
        switch self {
        case .cifar10: return ClassNames.cifar10
        case .cifar100: return coarse ? ClassNames.cifar100Coarse : ClassNames.cifar100Fine
        case .stl10: return ClassNames.stl10
        case .fashionMNIST: return ClassNames.fashionMNIST
        }
    }

    /// Paper's mini-batch size: 100, and 32 for STL-10.
    public var defaultBatchSize: Int { self == .stl10 ? 32 : 100 }
    /// Zero padding before the random crop: 4 pixels, 12 for STL-10.
    public var defaultPadding: Int { self == .stl10 ? 12 : 4 }
    /// Random horizontal flip: yes, except for Fashion-MNIST (unless asked).
    public var defaultFlip: Bool { self != .fashionMNIST }
    /// The directory used when `--data-dir` is not given: for Fashion-MNIST the Debian
    /// package's (see ``FashionMNIST/defaultDirectory``); nil for the others (they must be
    /// downloaded by the user).
    public var defaultDataDirectory: String? {
        self == .fashionMNIST ? FashionMNIST.defaultDirectory : nil
    }

    /// Reads one split from `directory`, which holds the official file names.
    /// - Parameter coarseLabels: CIFAR-100 only: use the 20 coarse labels instead of the 100 fine.
    public func load(_ split: Split, from directory: String, coarseLabels: Bool = false) throws -> Dataset {
        switch self {
        case .cifar10: return try CIFAR10.load(split, from: directory)
        case .cifar100: return try CIFAR100.load(split, from: directory, coarse: coarseLabels)
        case .stl10: return try STL10.load(split, from: directory)
        case .fashionMNIST: return try FashionMNIST.load(split, from: directory)
        }
    }
}

/// Which labels a dataset's images carry: CIFAR-100 has two per image, the 100 fine classes
/// (default) and the 20 coarse superclasses (`--labels coarse`); the other datasets only `fine`.
public enum LabelSet: String, Sendable, CaseIterable, Codable {
    case fine, coarse
}

/// Class names of the supported datasets, in label order.
public enum ClassNames {
    public static let cifar10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                 "horse", "ship", "truck"]
    public static let cifar100Fine = [
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
        "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
        "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
        "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
        "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
        "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
        "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
        "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
        "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    ]
    public static let cifar100Coarse = [
        "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
        "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
        "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
        "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
        "vehicles_1", "vehicles_2",
    ]
    public static let stl10 = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey",
                               "ship", "truck"]
    public static let fashionMNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                      "Shirt", "Sneaker", "Bag", "Ankle boot"]
}
