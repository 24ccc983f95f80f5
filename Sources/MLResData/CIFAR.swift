/// The CIFAR binary record layout shared by CIFAR-10 and CIFAR-100: `labelBytes` label bytes,
/// then 3072 pixel bytes (the R, G and B planes of a 32x32 image, each row-major), which is
/// already the CHW layout a ``Dataset`` stores.
struct CIFARRecordFormat {
    var labelBytes: Int
    /// Which of the label bytes is used.
    var labelIndex: Int
    var numClasses: Int
    /// Other label bytes to validate though not used: (byte index, number of classes).
    var alsoValidate: [(index: Int, numClasses: Int)] = []
    /// How errors name label byte `i` (CIFAR-100: "coarse label (byte 0)", "fine label (byte 1)").
    var labelNames: [String] = ["label"]
    /// Records in one official file (for the expected size in error messages).
    var officialRecords: Int

    static let pixelBytes = 3 * 32 * 32
    var recordBytes: Int { labelBytes + Self.pixelBytes }

    var expectedDescription: String {
        "a non-zero whole number of \(recordBytes)-byte records; the official file has "
            + "\(officialRecords) records = \(formatBytes(officialRecords * recordBytes))"
    }

    /// Reads one file, validating its size and every label before keeping anything.
    func read(_ path: String, into images: inout [UInt8], labels: inout [Int32]) throws {
        let bytes = try readWholeFile(path, expected: expectedDescription)
        guard !bytes.isEmpty, bytes.count % recordBytes == 0 else {
            throw DatasetError.badSize(path: path, actualBytes: bytes.count, expected: expectedDescription)
        }
        let n = bytes.count / recordBytes
        for (index, classes) in [(labelIndex, numClasses)] + alsoValidate.map({ ($0.index, $0.numClasses) }) {
            for r in 0 ..< n {
                let v = Int(bytes[r * recordBytes + index])
                guard v < classes else {
                    throw DatasetError.badLabel(path: path, record: r, value: v, valid: 0 ... classes - 1,
                                                label: labelNames[index])
                }
            }
        }
        images.reserveCapacity(images.count + n * Self.pixelBytes)
        labels.reserveCapacity(labels.count + n)
        bytes.withUnsafeBufferPointer { b in
            for r in 0 ..< n {
                let base = r * recordBytes
                labels.append(Int32(b[base + labelIndex]))
                images.append(contentsOf: b[(base + labelBytes) ..< (base + recordBytes)])
            }
        }
    }
}

/// CIFAR-10, binary version: `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin`,
/// each record 1 label byte (0...9) + 3072 pixel bytes. Files with any whole number of records
/// are accepted (so small fixtures work); anything else is an error naming the file.
public enum CIFAR10 {
    public static let trainFiles = (1 ... 5).map { "data_batch_\($0).bin" }
    public static let testFiles = ["test_batch.bin"]
    static let format = CIFARRecordFormat(labelBytes: 1, labelIndex: 0, numClasses: 10, officialRecords: 10_000)

    /// Reads the split's files from `directory`, in the official order.
    public static func load(_ split: Split, from directory: String) throws -> Dataset {
        try readFiles((split == .train ? trainFiles : testFiles).map { joinPath(directory, $0) })
    }

    /// Reads the given CIFAR-10 binary files (e.g. just `test_batch.bin`), concatenated.
    public static func readFiles(_ paths: [String]) throws -> Dataset {
        var images: [UInt8] = [], labels: [Int32] = []
        for p in paths { try format.read(p, into: &images, labels: &labels) }
        return Dataset(images: images, labels: labels, channels: 3, height: 32, width: 32,
                       classNames: ClassNames.cifar10)
    }
}

/// CIFAR-100, binary version: `train.bin` (50,000 records) and `test.bin` (10,000), each record
/// a coarse label byte (0...19), a fine label byte (0...99) and 3072 pixel bytes. Fine labels by
/// default; `coarse: true` (`--labels coarse`) uses the 20 superclasses. Both labels are validated.
public enum CIFAR100 {
    public static func fileName(_ split: Split) -> String { split == .train ? "train.bin" : "test.bin" }

    public static func load(_ split: Split, from directory: String, coarse: Bool = false) throws -> Dataset {
        try readFile(joinPath(directory, fileName(split)), coarse: coarse,
                     officialRecords: split == .train ? 50_000 : 10_000)
    }

    public static func readFile(_ path: String, coarse: Bool = false, officialRecords: Int = 50_000) throws -> Dataset {
        // The label not used is validated too: a bad byte there means a damaged or wrong file.
        let format = CIFARRecordFormat(labelBytes: 2, labelIndex: coarse ? 0 : 1,
                                       numClasses: coarse ? 20 : 100,
                                       alsoValidate: [(index: coarse ? 1 : 0, numClasses: coarse ? 100 : 20)],
                                       labelNames: ["coarse label", "fine label"],
                                       officialRecords: officialRecords)
        var images: [UInt8] = [], labels: [Int32] = []
        try format.read(path, into: &images, labels: &labels)
        return Dataset(images: images, labels: labels, channels: 3, height: 32, width: 32,
                       classNames: coarse ? ClassNames.cifar100Coarse : ClassNames.cifar100Fine)
    }
}
