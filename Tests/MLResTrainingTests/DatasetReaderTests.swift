import Foundation
import Testing
@testable import MLResData
@testable import MLResTraining

// MARK: - Readers on the committed fixtures (exact pixels and labels)

@Test("CIFAR-10: five training files concatenated in order, exact labels and RGB planes")
func cifar10Fixture() throws {
    for (split, s, n) in [(Split.train, 0, 40), (.test, 1, 20)] {
        let ds = try DatasetKind.cifar10.load(split, from: Fixtures.dir("cifar10"))
        #expect(ds.shape == [n, 3, 32, 32])
        #expect(ds.classNames == ClassNames.cifar10)
        var bad = 0
        for g in 0 ..< n {
            if ds.labels[g] != Fixtures.cifar10Label(g, s) { bad += 1 }
            let img = Array(ds.image(g))
            for c in 0 ..< 3 { for y in 0 ..< 32 { for x in 0 ..< 32 where img[c * 1024 + y * 32 + x] != Fixtures.cifar10Pixel(g, c, y, x, s) { bad += 1 } } }
        }
        #expect(bad == 0, "\(bad) wrong values in \(split)")
    }
}

@Test("CIFAR-100: fine labels by default, coarse on request, same pixels")
func cifar100Fixture() throws {
    for (split, s, n) in [(Split.train, 0, 20), (.test, 1, 10)] {
        let fine = try DatasetKind.cifar100.load(split, from: Fixtures.dir("cifar100"))
        let coarse = try DatasetKind.cifar100.load(split, from: Fixtures.dir("cifar100"), coarseLabels: true)
        #expect(fine.labels == (0 ..< n).map { Fixtures.cifar100Fine($0, s) })
        #expect(coarse.labels == (0 ..< n).map { Fixtures.cifar100Coarse($0, s) })
        #expect(fine.numClasses == 100 && coarse.numClasses == 20)
        #expect(fine.images == coarse.images)
        let expected = (0 ..< n).flatMap { g in (0 ..< 3).flatMap { c in (0 ..< 32).flatMap { y in (0 ..< 32).map { x in Fixtures.cifar100Pixel(g, c, y, x, s) } } } }
        #expect(fine.images == expected)
    }
}

@Test("STL-10: column-major planes transposed to CHW row-major, labels 1...10 become 0...9")
func stl10Fixture() throws {
    for (split, s, n) in [(Split.train, 0, 3), (.test, 1, 2)] {
        let ds = try DatasetKind.stl10.load(split, from: Fixtures.dir("stl10"))
        #expect(ds.shape == [n, 3, 96, 96])
        #expect(ds.labels == (0 ..< n).map { Int32(Fixtures.stlLabelOnDisk($0, s) - 1) })
        var bad = 0
        for g in 0 ..< n {
            let img = Array(ds.image(g))
            for c in 0 ..< 3 { for y in 0 ..< 96 { for x in 0 ..< 96 where img[c * 9216 + y * 96 + x] != Fixtures.stlPixel(g, c, y, x, s) { bad += 1 } } }
        }
        #expect(bad == 0)
        // Against the raw bytes: pixel (row y, column x) of plane 0 is file byte x*96 + y.
        let raw = Fixtures.readBytes(Fixtures.dir("stl10") + (split == .train ? "/train_X.bin" : "/test_X.bin"))
        #expect(ds.images[96] == raw[1])      // row 1, column 0
        #expect(ds.images[1] == raw[96])      // row 0, column 1
        #expect(ds.images[1] != raw[1])       // the transpose matters for this pattern
    }
}

@Test("Fashion-MNIST IDX: gzipped training files and raw test files, exact values")
func idxFixture() throws {
    for (split, s, n) in [(Split.train, 0, 30), (.test, 1, 12)] {
        let ds = try DatasetKind.fashionMNIST.load(split, from: Fixtures.dir("fashion-mnist"))
        #expect(ds.shape == [n, 1, 28, 28])
        #expect(ds.classNames == ClassNames.fashionMNIST)
        #expect(ds.labels == (0 ..< n).map { Fixtures.idxLabel($0, s) })
        let expected = (0 ..< n).flatMap { g in (0 ..< 28).flatMap { y in (0 ..< 28).map { x in Fixtures.idxPixel(g, y, x, s) } } }
        #expect(ds.images == expected)
    }
    #expect(FileManager.default.fileExists(atPath: Fixtures.dir("fashion-mnist") + "/train-images-idx3-ubyte.gz"))
    #expect(FileManager.default.fileExists(atPath: Fixtures.dir("fashion-mnist") + "/t10k-images-idx3-ubyte"))
}

@Test("Class names and per-dataset defaults")
func kindDefaults() {
    #expect(ClassNames.cifar100Fine.count == 100 && Set(ClassNames.cifar100Fine).count == 100)
    #expect(ClassNames.cifar100Coarse.count == 20 && Set(ClassNames.cifar100Coarse).count == 20)
    #expect(ClassNames.cifar100Fine == ClassNames.cifar100Fine.sorted())  // official order is alphabetical
    #expect(DatasetKind.cifar10.defaultBatchSize == 100 && DatasetKind.stl10.defaultBatchSize == 32)
    #expect(DatasetKind.cifar100.defaultPadding == 4 && DatasetKind.stl10.defaultPadding == 12)
    #expect(DatasetKind.cifar10.defaultFlip && !DatasetKind.fashionMNIST.defaultFlip)
    #expect(DatasetKind(flag: "fashion-mnist") == .fashionMNIST && DatasetKind(flag: "CIFAR10") == .cifar10)
    #expect(DatasetKind(flag: "mnist") == nil)
    #expect(DatasetKind.fashionMNIST.defaultDataDirectory == FashionMNIST.defaultDirectory)
    #expect(DatasetKind.cifar10.defaultDataDirectory == nil)
}

@Test("Subsets: first N, or a seeded sample in file order; too large is an error")
func subsets() throws {
    let ds = try DatasetKind.cifar10.load(.train, from: Fixtures.dir("cifar10"))
    let first = try ds.subset(7)
    #expect(first.count == 7 && first.labels == Array(ds.labels[0 ..< 7]) && first.images == Array(ds.images[0 ..< 7 * 3072]))
    let a = try ds.subset(10, seed: 5), b = try ds.subset(10, seed: 5), c = try ds.subset(10, seed: 6)
    #expect(a == b && a != c)
    // Each picked image is one of the originals, distinct, in increasing file order.
    let idx = (0 ..< 10).map { k in (0 ..< ds.count).first { Array(ds.image($0)) == Array(a.image(k)) }! }
    #expect(idx == idx.sorted() && Set(idx).count == 10)
    #expect(message { try ds.subset(41, flag: "--train-subset") }.contains("--train-subset 41 is larger than the 40"))
    #expect(try ds.subset(40) == ds)
}

// MARK: - Errors name the file (and record)

@Test("Missing file: names it and the size expected")
func missingFiles() throws {
    let empty = try Fixtures.emptyDir()
    defer { Fixtures.remove(empty) }
    let m10 = message { try DatasetKind.cifar10.load(.train, from: empty) }
    #expect(m10.contains(empty + "/data_batch_1.bin") && m10.contains("30,730,000 bytes"), "\(m10)")
    let m100 = message { try DatasetKind.cifar100.load(.test, from: empty) }
    #expect(m100.contains(empty + "/test.bin") && m100.contains("30,740,000 bytes"), "\(m100)")
    let mstl = message { try DatasetKind.stl10.load(.train, from: empty) }
    #expect(mstl.contains(empty + "/train_X.bin") && mstl.contains("138,240,000 bytes"), "\(mstl)")
    let mf = message { try DatasetKind.fashionMNIST.load(.test, from: empty) }
    #expect(mf.contains(empty + "/t10k-images-idx3-ubyte[.gz]") && mf.contains("7,840,016 bytes"), "\(mf)")
    // A missing 3rd CIFAR batch is named even though the first two are fine.
    let d = try Fixtures.scratchCopy(of: "cifar10")
    defer { Fixtures.remove(d) }
    Fixtures.remove(d + "/data_batch_3.bin")
    #expect(message { try DatasetKind.cifar10.load(.train, from: d) }.contains(d + "/data_batch_3.bin"))
    // STL labels missing.
    let s = try Fixtures.scratchCopy(of: "stl10")
    defer { Fixtures.remove(s) }
    Fixtures.remove(s + "/test_y.bin")
    let ms = message { try DatasetKind.stl10.load(.test, from: s) }
    #expect(ms.contains(s + "/test_y.bin") && ms.contains("2 bytes"), "\(ms)")
}

@Test("Short or truncated files: named with their size and the size expected")
func shortFiles() throws {
    let d = try Fixtures.scratchCopy(of: "cifar10")
    defer { Fixtures.remove(d) }
    let p = d + "/test_batch.bin"
    try Fixtures.writeBytes(p, Array(Fixtures.readBytes(p).dropLast(100)))
    let e = caught { try DatasetKind.cifar10.load(.test, from: d) }
    #expect(e as? DatasetError == .badSize(path: p, actualBytes: 61_360, expected: CIFAR10.format.expectedDescription))
    #expect("\(e!)".contains("3073-byte records"))
    try Fixtures.writeBytes(p, [])
    #expect(message { try DatasetKind.cifar10.load(.test, from: d) }.contains(p + " has 0 bytes"))

    let c = try Fixtures.scratchCopy(of: "cifar100")
    defer { Fixtures.remove(c) }
    try Fixtures.writeBytes(c + "/train.bin", Array(Fixtures.readBytes(c + "/train.bin").dropLast(1)))
    #expect(message { try DatasetKind.cifar100.load(.train, from: c) }.contains(c + "/train.bin has 61479 bytes"))

    let s = try Fixtures.scratchCopy(of: "stl10")
    defer { Fixtures.remove(s) }
    try Fixtures.writeBytes(s + "/train_X.bin", Array(Fixtures.readBytes(s + "/train_X.bin").dropLast(9216)))
    #expect(message { try DatasetKind.stl10.load(.train, from: s) }.contains(s + "/train_X.bin has 73728 bytes"))
    try Fixtures.writeBytes(s + "/test_y.bin", [1, 2, 3])
    let my = message { try DatasetKind.stl10.load(.test, from: s) }
    #expect(my.contains(s + "/test_y.bin has 3 bytes") && my.contains("2 bytes"), "\(my)")

    let f = try Fixtures.scratchCopy(of: "fashion-mnist")
    defer { Fixtures.remove(f) }
    let ip = f + "/t10k-images-idx3-ubyte"
    try Fixtures.writeBytes(ip, Array(Fixtures.readBytes(ip).dropLast(5)))
    let mi = message { try DatasetKind.fashionMNIST.load(.test, from: f) }
    #expect(mi.contains(ip + " has 9419 bytes") && mi.contains("9,424 bytes for dimensions [12, 28, 28]"), "\(mi)")
    try Fixtures.writeBytes(ip, [0, 0, 8])
    #expect(message { try DatasetKind.fashionMNIST.load(.test, from: f) }.contains(ip + " has 3 bytes"))
}

@Test("Bad labels: the file and the record index are named")
func badLabels() throws {
    let d = try Fixtures.scratchCopy(of: "cifar10")
    defer { Fixtures.remove(d) }
    let p = d + "/data_batch_2.bin"
    var b = Fixtures.readBytes(p)
    b[5 * 3073] = 10
    try Fixtures.writeBytes(p, b)
    let e = caught { try DatasetKind.cifar10.load(.train, from: d) }
    #expect(e as? DatasetError == .badLabel(path: p, record: 5, value: 10, valid: 0 ... 9))
    #expect("\(e!)".contains("record 5 has label 10"))

    // CIFAR-100: a bad coarse byte is caught even when fine labels are used, and vice versa.
    let c = try Fixtures.scratchCopy(of: "cifar100")
    defer { Fixtures.remove(c) }
    var t = Fixtures.readBytes(c + "/test.bin")
    t[3 * 3074] = 20
    try Fixtures.writeBytes(c + "/test.bin", t)
    #expect(caught { try DatasetKind.cifar100.load(.test, from: c) } as? DatasetError
        == .badLabel(path: c + "/test.bin", record: 3, value: 20, valid: 0 ... 19, label: "coarse label"))
    #expect("\(caught { try DatasetKind.cifar100.load(.test, from: c) }!)".contains("record 3 has coarse label 20"))
    t = Fixtures.readBytes(Fixtures.dir("cifar100") + "/test.bin")
    t[7 * 3074 + 1] = 100
    try Fixtures.writeBytes(c + "/test.bin", t)
    #expect(caught { try DatasetKind.cifar100.load(.test, from: c, coarseLabels: true) } as? DatasetError
        == .badLabel(path: c + "/test.bin", record: 7, value: 100, valid: 0 ... 99, label: "fine label"))

    // STL-10: label 0 and 11 are invalid on disk (1...10).
    let s = try Fixtures.scratchCopy(of: "stl10")
    defer { Fixtures.remove(s) }
    try Fixtures.writeBytes(s + "/train_y.bin", [1, 0, 3])
    #expect(caught { try DatasetKind.stl10.load(.train, from: s) } as? DatasetError
        == .badLabel(path: s + "/train_y.bin", record: 1, value: 0, valid: 1 ... 10))
    try Fixtures.writeBytes(s + "/train_y.bin", [1, 2, 11])
    #expect(message { try DatasetKind.stl10.load(.train, from: s) }.contains("record 2 has label 11"))

    // IDX labels (raw test file).
    let f = try Fixtures.scratchCopy(of: "fashion-mnist")
    defer { Fixtures.remove(f) }
    var l = Fixtures.readBytes(f + "/t10k-labels-idx1-ubyte")
    l[8 + 4] = 10
    try Fixtures.writeBytes(f + "/t10k-labels-idx1-ubyte", l)
    #expect(caught { try DatasetKind.fashionMNIST.load(.test, from: f) } as? DatasetError
        == .badLabel(path: f + "/t10k-labels-idx1-ubyte", record: 4, value: 10, valid: 0 ... 9))
}

@Test("IDX: bad magic, image/label count mismatch, corrupt and truncated gzip")
func idxErrors() throws {
    let f = try Fixtures.scratchCopy(of: "fashion-mnist")
    defer { Fixtures.remove(f) }
    let ip = f + "/t10k-images-idx3-ubyte", lp = f + "/t10k-labels-idx1-ubyte"
    let goodImages = Fixtures.readBytes(ip), goodLabels = Fixtures.readBytes(lp)
    // Labels file given where images are expected: magic 0x801 instead of 0x803.
    try Fixtures.writeBytes(ip, goodLabels)
    let e = caught { try DatasetKind.fashionMNIST.load(.test, from: f) }
    #expect(e as? DatasetError == .badMagic(path: ip, found: 0x801, expected: 0x803))
    #expect("\(e!)".contains("IDX magic number 0x00000801, expected 0x00000803"))
    try Fixtures.writeBytes(ip, goodImages)
    // 11 labels for 12 images.
    var l = goodLabels
    l[7] = 11; l.removeLast()
    try Fixtures.writeBytes(lp, l)
    #expect(message { try DatasetKind.fashionMNIST.load(.test, from: f) }.contains("\(lp) has 11 labels but \(ip) has 12 images"))
    try Fixtures.writeBytes(lp, goodLabels)
    #expect(try DatasetKind.fashionMNIST.load(.test, from: f).count == 12)

    // Corrupt gzip: damage the deflate data in the middle of the stream.
    let gz = f + "/train-images-idx3-ubyte.gz"
    let good = Fixtures.readBytes(gz)
    var bad = good
    for i in 20 ..< 60 { bad[i] ^= 0xA5 }
    try Fixtures.writeBytes(gz, bad)
    let ge = caught { try DatasetKind.fashionMNIST.load(.train, from: f) }
    if case .badGzip(let path, _)? = ge as? DatasetError { #expect(path == gz) } else { Issue.record("expected badGzip, got \(String(describing: ge))") }
    #expect("\(ge!)".contains(gz) && "\(ge!)".contains("corrupt gzip"))
    // Truncated gzip.
    try Fixtures.writeBytes(gz, Array(good.prefix(good.count / 2)))
    let te = message { try DatasetKind.fashionMNIST.load(.train, from: f) }
    #expect(te.contains(gz) && te.contains("truncated"), "\(te)")
    // Named .gz but not gzip.
    try Fixtures.writeBytes(gz, goodImages)
    #expect(message { try DatasetKind.fashionMNIST.load(.train, from: f) }.contains("does not start with the gzip magic"))
    // Gzip CRC damage (last 8 bytes are CRC32 + size) is caught by zlib too.
    var crc = good
    crc[crc.count - 8] ^= 0xFF
    try Fixtures.writeBytes(gz, crc)
    #expect(message { try DatasetKind.fashionMNIST.load(.train, from: f) }.contains(gz))
}

@Test("Gzip: round trip through concatenated members equals the raw data")
func gzipMembers() throws {
    // The training fixture is one gzip member; two copies concatenated decompress to the data twice.
    let gz = Fixtures.readBytes(Fixtures.dir("fashion-mnist") + "/train-labels-idx1-ubyte.gz")
    let one = try Gzip.decompress(gz, path: "x.gz")
    let two = try Gzip.decompress(gz + gz, path: "x.gz")
    #expect(one.count == 8 + 30 && two == one + one)
}

// MARK: - The real Fashion-MNIST (Debian's dataset-fashion-mnist), when installed

let fashionInstalled = FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory + "/train-images-idx3-ubyte.gz")

@Test("Real Fashion-MNIST from the Debian package: 60000/10000 images, 28x28, balanced labels 0...9",
      .enabled(if: fashionInstalled, "dataset-fashion-mnist is not installed (apt install dataset-fashion-mnist); skipped"))
func realFashionMNIST() throws {
    let train = try DatasetKind.fashionMNIST.load(.train, from: FashionMNIST.defaultDirectory)
    let test = try DatasetKind.fashionMNIST.load(.test, from: FashionMNIST.defaultDirectory)
    #expect(train.shape == [60_000, 1, 28, 28] && test.shape == [10_000, 1, 28, 28])
    #expect(train.classCounts == [Int](repeating: 6000, count: 10))
    #expect(test.classCounts == [Int](repeating: 1000, count: 10))
    // Statistics in the known range of Fashion-MNIST (mean ≈ 0.286, std ≈ 0.353).
    let stats = ChannelStats(of: train)
    #expect(abs(stats.mean[0] - 0.2860) < 0.001 && abs(stats.std[0] - 0.3530) < 0.001, "\(stats)")
}

@Test("Selection from flags: default directories, subsets, flag errors")
func selection() throws {
    let sel = DatasetSelection(kind: .cifar10, dataDirectory: Fixtures.dir("cifar10"), trainSubset: 12, testSubset: 5)
    let (train, test) = try sel.load()
    #expect(train.count == 12 && test.count == 5 && train.labels == (0 ..< 12).map { Fixtures.cifar10Label($0, 0) })
    #expect(message { try DatasetSelection(kind: .cifar10).load() }.contains("--dataset cifar10 needs --data-dir DIR"))
    #expect(try DatasetSelection(kind: .fashionMNIST).resolvedDirectory() == FashionMNIST.defaultDirectory)
    // The kind is typed: an unknown name never reaches a selection (no fallback to a default).
    #expect(DatasetKind(flag: "imagenet") == nil && DatasetKind(flag: "mnist") == nil)
    #expect(DatasetKind(flag: "Fashion_MNIST") == .fashionMNIST && DatasetKind(flag: "cifar-100") == .cifar100)
    #expect(message { try DatasetSelection(kind: .cifar10, dataDirectory: Fixtures.dir("cifar10"), coarseLabels: true).load() }
        .contains("--labels coarse applies to cifar100 only"))
    #expect(message { try DatasetSelection(kind: .stl10, dataDirectory: Fixtures.dir("stl10"), testSubset: 3).load() }
        .contains("--test-subset 3 is larger than the 2 images"))
    let seeded = DatasetSelection(kind: .cifar100, dataDirectory: Fixtures.dir("cifar100"), coarseLabels: true,
                                  trainSubset: 6, subsetSeed: 9)
    let a = try seeded.load(.train)
    #expect(try seeded.load(.train) == a && a.numClasses == 20 && a.count == 6)
}
