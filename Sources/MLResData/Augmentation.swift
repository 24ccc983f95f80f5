import MLResModel

/// Per-channel mean and standard deviation of a training set, over pixels scaled to [0, 1].
/// The trainer stores them in the checkpoint (`input_mean`, `input_std`) so that every later
/// evaluation standardises with the same numbers.
public struct ChannelStats: Sendable, Equatable {
    public var mean: [Double]
    /// Population standard deviation (divide by the number of pixels, not n - 1).
    public var std: [Double]

    public init(mean: [Double], std: [Double]) {
        precondition(mean.count == std.count)
        self.mean = mean; self.std = std
    }

    /// Exact statistics from a 256-bin histogram per channel (so the sums are exact integers
    /// and the result does not depend on summation order).
    public init(of dataset: Dataset) {
        let c = dataset.channels, plane = dataset.height * dataset.width
        var hist = [Int](repeating: 0, count: c * 256)
        dataset.images.withUnsafeBufferPointer { px in
            hist.withUnsafeMutableBufferPointer { h in
                var p = 0
                for _ in 0 ..< dataset.count {
                    for ch in 0 ..< c {
                        let base = ch * 256
                        for _ in 0 ..< plane { h[base + Int(px[p])] += 1; p += 1 }
                    }
                }
            }
        }
        var mean = [Double](repeating: 0, count: c), std = [Double](repeating: 0, count: c)
        for ch in 0 ..< c {
            let n = Double(dataset.count * plane)
            var s = 0.0
            for v in 0 ..< 256 { s += Double(hist[ch * 256 + v]) * Double(v) }
            let m = s / 255 / n
            var ss = 0.0
            for v in 0 ..< 256 { let d = Double(v) / 255 - m; ss += Double(hist[ch * 256 + v]) * d * d }
            mean[ch] = m
            std[ch] = (ss / n).squareRoot()
        }
        self.init(mean: mean, std: std)
    }

    /// As float32 vectors, the checkpoint's `input_mean` / `input_std`.
    public var meanTensor: Tensor { Tensor(shape: [mean.count], data: mean.map { Float($0) }) }
    public var stdTensor: Tensor { Tensor(shape: [std.count], data: std.map { Float($0) }) }
}

/// Pixel byte → standardised float32, by table: `lut[c*256 + v] = (v/255 - mean[c]) / std[c]`,
/// evaluated in float64 and rounded once to float32.
public struct Standardizer: Sendable, Equatable {
    public let channels: Int
    public let lut: [Float]

    /// From float32 mean/std (as a checkpoint stores them). A zero std is treated as 1.
    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count)
        channels = mean.count
        var t = [Float](repeating: 0, count: channels * 256)
        for c in 0 ..< channels {
            let s = std[c] > 0 ? Double(std[c]) : 1
            for v in 0 ..< 256 { t[c * 256 + v] = Float((Double(v) / 255 - Double(mean[c])) / s) }
        }
        lut = t
    }

    public init(_ stats: ChannelStats) {
        self.init(mean: stats.mean.map { Float($0) }, std: stats.std.map { Float($0) })
    }
}

/// The paper's training augmentation: zero-pad `padding` pixels on every side, take a random
/// crop of the original size (offset 0...2·padding in each direction), and optionally flip
/// horizontally with probability ½. Padding is black (pixel value 0 before standardisation, as
/// torchvision's `RandomCrop(padding=)` on the image does).
public struct Augmentation: Sendable, Equatable {
    public var padding: Int
    public var flip: Bool
    public init(padding: Int, flip: Bool) {
        precondition(padding >= 0)
        self.padding = padding; self.flip = flip
    }
    /// No augmentation (evaluation).
    public static let none = Augmentation(padding: 0, flip: false)
    /// The paper's defaults for a dataset (pad 4 / 12 for STL-10; flip except Fashion-MNIST).
    public static func defaults(for kind: DatasetKind) -> Augmentation {
        Augmentation(padding: kind.defaultPadding, flip: kind.defaultFlip)
    }

    /// One image's draw: crop offsets `dy`, `dx` in 0...2·padding and the flip bit, taken from
    /// `rng` in this order (the flip only when enabled), so a seed fixes every image's view.
    public func draw(_ rng: inout SplitMix64) -> (dy: Int, dx: Int, flip: Bool) {
        let dy = padding > 0 ? rng.nextInt(below: 2 * padding + 1) : 0
        let dx = padding > 0 ? rng.nextInt(below: 2 * padding + 1) : 0
        let f = flip ? (rng.next() >> 63) == 1 : false
        return (dy, dx, f)
    }
}

/// Writes one standardised, cropped and possibly flipped image:
/// `out[c, y, x] = lut[c, img[c, y + dy - P, x' + dx - P]]` with `x' = W-1-x` when flipped,
/// and `lut[c, 0]` where the source falls in the zero padding.
@inline(__always)
func writeAugmented(src: UnsafePointer<UInt8>, dst: UnsafeMutablePointer<Float>,
                    channels: Int, height h: Int, width w: Int,
                    padding p: Int, dy: Int, dx: Int, flip: Bool, lut: UnsafePointer<Float>) {
    let plane = h * w
    // Columns of the output whose source column (x + dx - p) lies inside the image.
    let x0 = max(0, p - dx), x1 = min(w, w + p - dx)  // [x0, x1)
    for c in 0 ..< channels {
        let t = lut + c * 256
        let pad = t[0]
        let sp = src + c * plane, dp = dst + c * plane
        for y in 0 ..< h {
            let orow = dp + y * w
            let sy = y + dy - p
            if sy < 0 || sy >= h || x0 >= x1 {
                for x in 0 ..< w { orow[x] = pad }
                continue
            }
            let srow = sp + sy * w + (dx - p)  // srow[x] is the source of output column x
            if !flip {
                for x in 0 ..< x0 { orow[x] = pad }
                for x in x0 ..< x1 { orow[x] = t[Int(srow[x])] }
                for x in x1 ..< w { orow[x] = pad }
            } else {
                // Flipped: output column x takes the unflipped crop's column w-1-x.
                for x in 0 ..< w {
                    let cx = w - 1 - x
                    orow[x] = (cx >= x0 && cx < x1) ? t[Int(srow[cx])] : pad
                }
            }
        }
    }
}
