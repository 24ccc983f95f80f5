import Foundation

/// The IDX format of MNIST and Fashion-MNIST, gzipped or not: a big-endian header
/// `00 00 08 ndims` (0x08 = unsigned bytes), `ndims` big-endian UInt32 dimensions, then the data.
/// Images files have magic 0x00000803 (`[N, rows, cols]`), labels files 0x00000801 (`[N]`).
public enum IDX {
    public static let imagesMagic: UInt32 = 0x0000_0803
    public static let labelsMagic: UInt32 = 0x0000_0801

    /// The file for `name` in `directory`: `name` if it exists, else `name.gz`.
    /// Neither existing throws ``DatasetError/missingFile`` naming both spellings.
    public static func locate(_ name: String, in directory: String, expected: String) throws -> String {
        let plain = joinPath(directory, name)
        if somethingExists(at: plain) { return plain }
        if somethingExists(at: plain + ".gz") { return plain + ".gz" }
        throw DatasetError.missingFile(path: plain + "[.gz]", expected: expected)
    }

    /// Reads an IDX file (decompressing gzip, detected by its magic bytes) and returns its
    /// dimensions and payload, after checking the magic number and that the payload size is
    /// exactly the product of the dimensions.
    public static func read(_ path: String, magic: UInt32, expected: String) throws -> (dims: [Int], data: ArraySlice<UInt8>) {
        var bytes = try readWholeFile(path, expected: expected)
        let wasGzip = Gzip.isGzip(bytes)
        if wasGzip {
            bytes = try Gzip.decompress(bytes, path: path)
        } else if path.hasSuffix(".gz") {
            throw DatasetError.badGzip(path: path, detail: "named .gz but does not start with the gzip magic 1f 8b")
        }
        guard bytes.count >= 4 else {
            throw DatasetError.badSize(path: path, actualBytes: bytes.count, expected: "at least a 4-byte IDX header; \(expected)")
        }
        let found = be32(bytes, 0)
        guard found == magic else { throw DatasetError.badMagic(path: path, found: found, expected: magic) }
        let ndims = Int(magic & 0xff)
        let headerBytes = 4 + 4 * ndims
        guard bytes.count >= headerBytes else {
            throw DatasetError.badSize(path: path, actualBytes: bytes.count,
                                       expected: "at least the \(headerBytes)-byte IDX header; \(expected)")
        }
        let dims = (0 ..< ndims).map { Int(be32(bytes, 4 + 4 * $0)) }
        guard dims.allSatisfy({ $0 > 0 }) else {
            throw DatasetError.badHeader(path: path, detail: "IDX dimensions \(dims) include a zero")
        }
        // Product with an overflow check (dimensions come from the file).
        var payload = 1
        for d in dims {
            let (p, o) = payload.multipliedReportingOverflow(by: d)
            guard !o, p < (1 << 40) else {
                throw DatasetError.badHeader(path: path, detail: "IDX dimensions \(dims) are implausibly large")
            }
            payload = p
        }
        guard bytes.count == headerBytes + payload else {
            let what = wasGzip ? " after decompression" : ""
            throw DatasetError.badSize(path: path, actualBytes: bytes.count,
                                       expected: "\(formatBytes(headerBytes + payload))\(what) for dimensions \(dims)")
        }
        return (dims, bytes[headerBytes...])
    }

    /// Reads an images file and a labels file into a ``Dataset`` (1 channel).
    public static func readPair(images imagesPath: String, labels labelsPath: String, classNames: [String],
                                expectedImages: String = "an IDX images file (magic 0x00000803)",
                                expectedLabels: String = "an IDX labels file (magic 0x00000801)") throws -> Dataset {
        let img = try read(imagesPath, magic: imagesMagic, expected: expectedImages)
        let lab = try read(labelsPath, magic: labelsMagic, expected: expectedLabels)
        let n = img.dims[0]
        guard lab.dims[0] == n else {
            throw DatasetError.mismatch(detail: "\(labelsPath) has \(lab.dims[0]) labels but \(imagesPath) has \(n) images")
        }
        let k = classNames.count
        var labels = [Int32](repeating: 0, count: n)
        for (r, v) in lab.data.enumerated() {
            guard Int(v) < k else {
                throw DatasetError.badLabel(path: labelsPath, record: r, value: Int(v), valid: 0 ... k - 1)
            }
            labels[r] = Int32(v)
        }
        return Dataset(images: Array(img.data), labels: labels, channels: 1, height: img.dims[1], width: img.dims[2],
                       classNames: classNames)
    }

    private static func be32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }
}

/// Fashion-MNIST in the MNIST IDX format: `train-images-idx3-ubyte[.gz]`,
/// `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`;
/// 28x28 grey images, labels 0...9.
public enum FashionMNIST {
    /// Where Debian's `dataset-fashion-mnist` package installs the files.
    public static let debianDirectory = "/usr/share/datasets/fashion-mnist"

    /// The default `--data-dir` for `--dataset fashion-mnist`: the directory that
    /// `dpkg -L dataset-fashion-mnist` lists `train-images-idx3-ubyte.gz` in, or
    /// ``debianDirectory`` when dpkg is not available or the package is not installed.
    public static let defaultDirectory: String = {
        if let listed = dpkgListing("dataset-fashion-mnist"),
           let line = listed.split(separator: "\n").first(where: { $0.hasSuffix("/train-images-idx3-ubyte.gz") }) {
            return String(line.dropLast("/train-images-idx3-ubyte.gz".count))
        }
        return debianDirectory
    }()

    public static func fileNames(_ split: Split) -> (images: String, labels: String) {
        let p = split == .train ? "train" : "t10k"
        return ("\(p)-images-idx3-ubyte", "\(p)-labels-idx1-ubyte")
    }

    public static func load(_ split: Split, from directory: String) throws -> Dataset {
        let names = fileNames(split)
        let n = split == .train ? 60_000 : 10_000
        let expImg = "IDX images [\(n), 28, 28] = \(formatBytes(16 + n * 784)) uncompressed"
        let expLab = "IDX labels [\(n)] = \(formatBytes(8 + n)) uncompressed"
        let imgPath = try IDX.locate(names.images, in: directory, expected: expImg)
        let labPath = try IDX.locate(names.labels, in: directory, expected: expLab)
        let ds = try IDX.readPair(images: imgPath, labels: labPath, classNames: ClassNames.fashionMNIST,
                                  expectedImages: expImg, expectedLabels: expLab)
        guard ds.height == 28, ds.width == 28 else {
            throw DatasetError.badHeader(path: imgPath, detail: "images are \(ds.height)x\(ds.width), Fashion-MNIST's are 28x28")
        }
        return ds
    }

    /// Output of `dpkg -L PACKAGE`, or nil when dpkg is absent or fails.
    static func dpkgListing(_ package: String) -> String? {
        let dpkg = "/usr/bin/dpkg"
        guard FileManager.default.isExecutableFile(atPath: dpkg) else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: dpkg)
        p.arguments = ["-L", package]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
