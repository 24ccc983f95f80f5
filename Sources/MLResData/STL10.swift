/// STL-10, binary version (labelled splits only): `train_X.bin`/`train_y.bin` (5,000 images) and
/// `test_X.bin`/`test_y.bin` (8,000). Each image is 3x96x96 uint8, channel after channel, but
/// each channel plane is stored column-major (the files were written from MATLAB): byte
/// `x*96 + y` of a plane is the pixel at row `y`, column `x`. The reader transposes every plane
/// so the ``Dataset`` holds standard CHW row-major images. Labels are one byte per image, 1...10 on
/// disk, and become 0...9.
public enum STL10 {
    static let side = 96
    static let imageBytes = 3 * 96 * 96

    public static func fileNames(_ split: Split) -> (images: String, labels: String) {
        split == .train ? ("train_X.bin", "train_y.bin") : ("test_X.bin", "test_y.bin")
    }

    public static func load(_ split: Split, from directory: String) throws -> Dataset {
        let names = fileNames(split)
        return try readFiles(images: joinPath(directory, names.images), labels: joinPath(directory, names.labels),
                             officialCount: split == .train ? 5_000 : 8_000)
    }

    /// Reads an images file and its labels file, validating both before converting anything.
    public static func readFiles(images imagesPath: String, labels labelsPath: String,
                                 officialCount: Int = 5_000) throws -> Dataset {
        let xExpected = "a non-zero whole number of \(imageBytes)-byte images (3x96x96); the official file has "
            + "\(officialCount) images = \(formatBytes(officialCount * imageBytes))"
        let x = try readWholeFile(imagesPath, expected: xExpected)
        guard !x.isEmpty, x.count % imageBytes == 0 else {
            throw DatasetError.badSize(path: imagesPath, actualBytes: x.count, expected: xExpected)
        }
        let n = x.count / imageBytes
        let yExpected = "one label byte per image of \(imagesPath): \(formatBytes(n))"
        let y = try readWholeFile(labelsPath, expected: yExpected)
        guard y.count == n else {
            throw DatasetError.badSize(path: labelsPath, actualBytes: y.count, expected: yExpected)
        }
        for (r, v) in y.enumerated() where v < 1 || v > 10 {
            throw DatasetError.badLabel(path: labelsPath, record: r, value: Int(v), valid: 1 ... 10)
        }
        var out = [UInt8](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                let plane = side * side
                for p in 0 ..< (n * 3) {
                    let s = src.baseAddress! + p * plane, d = dst.baseAddress! + p * plane
                    // Row-major (y, x) <- column-major (x, y).
                    for yy in 0 ..< side {
                        for xx in 0 ..< side { d[yy * side + xx] = s[xx * side + yy] }
                    }
                }
            }
        }
        return Dataset(images: out, labels: y.map { Int32($0) - 1 }, channels: 3, height: side, width: side,
                       classNames: ClassNames.stl10)
    }
}
