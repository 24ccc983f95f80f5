import Foundation
import MLResModel
@testable import MLResServer

/// Test oracle (moved out of the server, issue 11 item 2; to be replaced by the shared float64
/// reference of Tests/MLResTestSupport): a plain-Swift, eval-mode forward pass of the network.
/// Straight loops, no SIMD: slow, for small models.
///
/// Eval-mode network (see ``Network``):
///
///     Y0      = stem(x)                                   3x3 conv, stride 1, pad 1
///     Y_{j+1} = P(Y_j) + h_j · conv2(relu(bn2(conv1(relu(bn1(Y_j))))))
///     logits  = fc(mean_{H,W} relu(bn(Y_last)))
///
/// with eval batch-norm `bn(x)_c = (x_c − μ_c)/√(σ²_c + ε)·γ_c + β_c` from the running statistics
/// and P the identity or, in a block that changes shape, `Y[:, :, ::2, ::2]` zero-padded from Cin
/// to Cout channels with the input at channel offset (Cout − Cin)/2.
public struct ReferenceBackend: InferenceBackend {
    /// Eval BN folded to `x·scale + shift` per channel.
    struct Affine: Sendable {
        var scale: [Float]
        var shift: [Float]
        init(_ bn: BatchNorm, epsilon: Double) {
            scale = []; shift = []
            for c in 0..<bn.channels {
                let s = Double(bn.weight.data[c]) / (Double(bn.runningVar.data[c]) + epsilon).squareRoot()
                scale.append(Float(s))
                shift.append(Float(Double(bn.bias.data[c]) - Double(bn.runningMean.data[c]) * s))
            }
        }
    }

    struct Block: Sendable {
        var h: Float
        var stride: Int
        var cin: Int
        var cout: Int
        var offset: Int
        var bn1: Affine
        var conv1: Tensor
        var bn2: Affine
        var conv2: Tensor
    }

    public let inputShape: [Int]
    public let numClasses: Int
    let stem: Tensor
    let blocks: [Block]
    let head: Affine
    let fcWeight: Tensor
    let fcBias: Tensor
    let threads: Int

    /// Builds the backend from a network; `threads` > 1 runs images of a batch in parallel.
    public init(network: Network, threads: Int = 1) {
        inputShape = network.inputShape
        numClasses = network.numClasses
        stem = network.stem
        let eps = network.bnEpsilon
        blocks = network.stages.flatMap { $0.blocks }.map { b in
            Block(h: Float(b.h), stride: b.stride, cin: b.inChannels, cout: b.outChannels,
                  offset: b.shortcutChannelOffset,
                  bn1: Affine(b.bn1, epsilon: eps), conv1: b.conv1,
                  bn2: Affine(b.bn2, epsilon: eps), conv2: b.conv2)
        }
        head = Affine(network.headBN, epsilon: eps)
        fcWeight = network.fcWeight
        fcBias = network.fcBias
        self.threads = max(1, threads)
    }

    public func infer(_ input: [Float], count: Int) throws -> [Float] {
        let imageSize = inputShape.reduce(1, *)
        guard count >= 0, input.count == count * imageSize else {
            throw BackendError("input has \(input.count) values, \(count) images of "
                               + "\(Tensor.describe(inputShape)) need \(count * imageSize)")
        }
        var out = [Float](repeating: 0, count: count * numClasses)
        let k = numClasses
        if threads == 1 || count == 1 {
            for n in 0..<count {
                let logits = forward(Array(input[n * imageSize ..< (n + 1) * imageSize]))
                out.replaceSubrange(n * k ..< (n + 1) * k, with: logits)
            }
        } else {
            out.withUnsafeMutableBufferPointer { buf in
                let outBase = UnsafeSendablePointer(buf.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: min(threads, count)) { worker in
                    var n = worker
                    while n < count {
                        let logits = forward(Array(input[n * imageSize ..< (n + 1) * imageSize]))
                        for j in 0..<k { outBase.pointer[n * k + j] = logits[j] }
                        n += min(threads, count)
                    }
                }
            }
        }
        return out
    }

    /// Logits of one image `[C, H, W]`.
    func forward(_ x: [Float]) -> [Float] {
        var h = inputShape[1], w = inputShape[2]
        var y = conv3x3(x, channels: inputShape[0], height: h, width: w, weight: stem, stride: 1).out
        var c = stem.shape[0]
        for b in blocks {
            // Residual branch F(Y).
            let a1 = affineReLU(y, b.bn1, height: h, width: w)
            let (z1, oh, ow) = conv3x3(a1, channels: b.cin, height: h, width: w, weight: b.conv1,
                                       stride: b.stride)
            let a2 = affineReLU(z1, b.bn2, height: oh, width: ow)
            let f = conv3x3(a2, channels: b.cout, height: oh, width: ow, weight: b.conv2, stride: 1).out
            // Shortcut P(Y).
            var next = [Float](repeating: 0, count: b.cout * oh * ow)
            for ci in 0..<c {
                for i in 0..<oh {
                    for j in 0..<ow {
                        next[((ci + b.offset) * oh + i) * ow + j] = y[(ci * h + i * b.stride) * w + j * b.stride]
                    }
                }
            }
            for i in next.indices { next[i] += b.h * f[i] }
            y = next; c = b.cout; h = oh; w = ow
        }
        let a = affineReLU(y, head, height: h, width: w)
        var pooled = [Float](repeating: 0, count: c)
        for ci in 0..<c {
            var s: Float = 0
            for p in 0..<(h * w) { s += a[ci * h * w + p] }
            pooled[ci] = s / Float(h * w)
        }
        var logits = [Float](repeating: 0, count: numClasses)
        for kk in 0..<numClasses {
            var s = fcBias.data[kk]
            for ci in 0..<c { s += fcWeight.data[kk * c + ci] * pooled[ci] }
            logits[kk] = s
        }
        return logits
    }

    /// relu(x·scale + shift) per channel.
    func affineReLU(_ x: [Float], _ bn: Affine, height: Int, width: Int) -> [Float] {
        var y = x
        let plane = height * width
        for c in 0..<bn.scale.count {
            for p in 0..<plane {
                y[c * plane + p] = max(0, x[c * plane + p] * bn.scale[c] + bn.shift[c])
            }
        }
        return y
    }

    /// 3x3 convolution, padding 1, no bias: `out[o,i,j] = Σ_{c,u,v} W[o,c,u,v]·x[c, i·s+u−1, j·s+v−1]`.
    func conv3x3(_ x: [Float], channels: Int, height: Int, width: Int, weight: Tensor,
                 stride: Int) -> (out: [Float], height: Int, width: Int) {
        let cout = weight.shape[0]
        let oh = (height - 1) / stride + 1, ow = (width - 1) / stride + 1
        var out = [Float](repeating: 0, count: cout * oh * ow)
        for o in 0..<cout {
            for c in 0..<channels {
                for u in 0..<3 {
                    for v in 0..<3 {
                        let wv = weight.data[((o * channels + c) * 3 + u) * 3 + v]
                        for i in 0..<oh {
                            let yi = i * stride + u - 1
                            if yi < 0 || yi >= height { continue }
                            for j in 0..<ow {
                                let xj = j * stride + v - 1
                                if xj < 0 || xj >= width { continue }
                                out[(o * oh + i) * ow + j] += wv * x[(c * height + yi) * width + xj]
                            }
                        }
                    }
                }
            }
        }
        return (out, oh, ow)
    }
}

/// A pointer that may cross into `concurrentPerform`; each worker writes disjoint elements.
struct UnsafeSendablePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { pointer = p }
}

/// A backend failure with a message.
public struct BackendError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ message: String) { description = message }
}
