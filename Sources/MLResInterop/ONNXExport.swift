import Foundation
import MLResModel
import SwiftProtobuf

/// The inference graph of a network as an ONNX model (onnx.proto, IR version 8, opset 17),
/// built with the protobuf messages generated from onnx.proto (`ONNX/onnx.pb.swift`).
///
/// The graph computes what `mlres-eval score` and the server compute, in eval mode:
///
///     input  [N, C, H, W] float32, pixels in [0, 1]; N is the dynamic dimension "N"
///     x      = (input − input_mean) / input_std            Sub, Div ([1, C, 1, 1] constants)
///     Y₀     = stem.conv(x)                                 Conv 3×3, pad 1, no bias
///     Y_{j+1} = P(Y_j) + h_j · F(Y_j)  for every block, in checkpoint order, where
///       F(Y) = conv2(relu(bn2(conv1(relu(bn1(Y))))))
///              bn1: BatchNormalization (running statistics); relu: Relu
///              bn2 ∘ conv1 folded into one Conv with bias:  W₁' = s·W₁, b = β₂ − s·μ₂,
///                  s = γ₂ / √(σ²₂ + ε)  (exact: no non-linearity between them)
///              h · conv2 folded into conv2:  W₂' = h·W₂  (a block with h = 0 keeps its zero branch)
///       P(Y) = Y, or for a block that changes shape: Y[:, :, ::2, ::2] (Slice, steps 2) and the
///              channels zero-padded from Cin to Cout with (Cout − Cin)/2 zeros before (Pad)
///     logits = fc(mean_{H,W}(relu(head.bn(Y))))             BatchNormalization, Relu,
///                                                           GlobalAveragePool, Flatten, Gemm
///     class  = argmax(logits, axis 1)                       ArgMax, int64 [N]
///
/// Folding is done in float64 and rounded once to float32. The outputs are named `logits`
/// and `class` like the server's (docs/server.md).
public enum ONNXExport {
    public static let irVersion: Int64 = 8
    public static let opsetVersion: Int64 = 17

    /// The serialized `ModelProto`. `sourceSHA256` is recorded in the model's metadata_props
    /// with the architecture and every h. Throws when a tensor or h is not finite.
    public static func model(_ checkpoint: Checkpoint, sourceSHA256: String) throws -> [UInt8] {
        let proto = try modelProto(checkpoint, sourceSHA256: sourceSHA256)
        return [UInt8](try proto.serializedBytes() as [UInt8])
    }

    /// The model as a message (for tests and inspection).
    public static func modelProto(_ checkpoint: Checkpoint, sourceSHA256: String) throws -> Onnx_ModelProto {
        let net = checkpoint.network
        try StateDict.requireFinite(net)
        var g = GraphBuilder()
        let c = net.inputShape[0]

        g.graph.name = "mlres-\(net.blocksDescription)"
        g.graph.input = [valueInfo("input", .float, [.param("N"), .value(c), .value(net.inputShape[1]), .value(net.inputShape[2])])]
        g.graph.output = [valueInfo("logits", .float, [.param("N"), .value(net.numClasses)]),
                          valueInfo("class", .int64, [.param("N")])]

        // Input standardisation.
        let mean = g.constant("input_mean", [1, c, 1, 1], net.inputMean)
        let std = g.constant("input_std", [1, c, 1, 1], net.inputStd)
        let centered = g.node("Sub", ["input", mean], name: "standardize/sub")
        var y = g.node("Div", [centered, std], name: "standardize/div")

        // Stem.
        let stemW = g.constant("stem.conv.weight", net.stem.shape, net.stem.data)
        y = g.node("Conv", [y, stemW], name: "stem.conv", attributes: conv3x3(stride: 1))

        let eps = net.bnEpsilon
        for (s, stage) in net.stages.enumerated() {
            for (b, blk) in stage.blocks.enumerated() {
                let p = "stages.\(s).blocks.\(b)"
                // Branch F, scaled by h.
                var f = g.batchNorm("\(p).bn1", y, blk.bn1, epsilon: eps)
                f = g.node("Relu", [f], name: "\(p).relu1")
                let (w1, b1) = foldBN(conv: blk.conv1, bn: blk.bn2, epsilon: eps)
                f = g.node("Conv", [f, g.constant("\(p).conv1.weight+bn2", blk.conv1.shape, w1),
                                    g.constant("\(p).conv1.bias+bn2", [blk.outChannels], b1)],
                           name: "\(p).conv1+bn2", attributes: conv3x3(stride: blk.stride))
                f = g.node("Relu", [f], name: "\(p).relu2")
                let w2 = blk.conv2.data.map { Float(blk.h * Double($0)) }
                f = g.node("Conv", [f, g.constant("\(p).conv2.weight*h", blk.conv2.shape, w2)],
                           name: "\(p).conv2*h", attributes: conv3x3(stride: 1))
                // Shortcut P.
                var shortcut = y
                if blk.stride != 1 {
                    let k = blk.stride
                    shortcut = g.node("Slice", [shortcut, g.int64s("\(p).shortcut.starts", [0, 0]),
                                                g.int64s("\(p).shortcut.ends", [Int64.max, Int64.max]),
                                                g.int64s("\(p).shortcut.axes", [2, 3]),
                                                g.int64s("\(p).shortcut.steps", [Int64(k), Int64(k)])],
                                      name: "\(p).shortcut.subsample")
                }
                if blk.outChannels != blk.inChannels {
                    let before = Int64(blk.shortcutChannelOffset)
                    let after = Int64(blk.outChannels - blk.inChannels) - before
                    shortcut = g.node("Pad", [shortcut, g.int64s("\(p).shortcut.pads", [0, before, 0, 0, 0, after, 0, 0])],
                                      name: "\(p).shortcut.zero_pad")
                }
                y = g.node("Add", [shortcut, f], name: "\(p).add")
            }
        }

        // Head.
        y = g.batchNorm("head.bn", y, net.headBN, epsilon: eps)
        y = g.node("Relu", [y], name: "head.relu")
        y = g.node("GlobalAveragePool", [y], name: "head.pool")
        y = g.node("Flatten", [y], name: "head.flatten", attributes: [attr("axis", int: 1)])
        let fcW = g.constant("head.fc.weight", net.fcWeight.shape, net.fcWeight.data)
        let fcB = g.constant("head.fc.bias", net.fcBias.shape, net.fcBias.data)
        _ = g.node("Gemm", [y, fcW, fcB], name: "head.fc", attributes: [attr("transB", int: 1)], output: "logits")
        _ = g.node("ArgMax", ["logits"], name: "class", attributes: [attr("axis", int: 1), attr("keepdims", int: 0)], output: "class")

        var m = Onnx_ModelProto()
        m.irVersion = irVersion
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = opsetVersion
        m.opsetImport = [opset]
        m.producerName = "mlres"
        m.producerVersion = MLRes.version
        m.docString = "Multi-level residual network (Chang et al., ICLR 2018) exported by \(MLRes.tool): "
            + "pre-activation blocks Y + h·F(Y), eval-mode BN, input pixels in [0,1] standardised inside the graph."
        m.graph = g.graph
        var props: [(String, String)] = [
            ("mlres_source_sha256", sourceSHA256),
            ("stage_blocks", StateDict.json(net.stageBlocks)),
            ("stage_widths", StateDict.json(net.stageWidths)),
            ("input_shape", StateDict.json(net.inputShape)),
            ("num_classes", StateDict.json(net.numClasses)),
            ("h", StateDict.json(net.stepSizes)),
            ("input_mean", StateDict.json(net.inputMean)),
            ("input_std", StateDict.json(net.inputStd)),
        ]
        if let names = net.classNames { props.append(("class_names", StateDict.json(names))) }
        m.metadataProps = props.map { k, v in
            var e = Onnx_StringStringEntryProto(); e.key = k; e.value = v; return e
        }
        return m
    }

    /// `bn(conv(x))` as one convolution with bias, in float64: W' = s·W per output channel,
    /// b = β − s·μ with s = γ / √(σ² + ε).
    static func foldBN(conv: Tensor, bn: BatchNorm, epsilon: Double) -> (weight: [Float], bias: [Float]) {
        let cout = conv.shape[0]
        let per = conv.count / cout
        var w = [Float](repeating: 0, count: conv.count)
        var bias = [Float](repeating: 0, count: cout)
        for o in 0..<cout {
            let s = Double(bn.weight.data[o]) / (Double(bn.runningVar.data[o]) + epsilon).squareRoot()
            for i in 0..<per { w[o * per + i] = Float(s * Double(conv.data[o * per + i])) }
            bias[o] = Float(Double(bn.bias.data[o]) - s * Double(bn.runningMean.data[o]))
        }
        return (w, bias)
    }

    enum Dim { case param(String), value(Int) }

    static func valueInfo(_ name: String, _ type: Onnx_TensorProto.DataType, _ dims: [Dim]) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { d in
            var x = Onnx_TensorShapeProto.Dimension()
            switch d {
            case .param(let p): x.dimParam = p
            case .value(let v): x.dimValue = Int64(v)
            }
            return x
        }
        var t = Onnx_TypeProto.Tensor()
        t.elemType = Int32(type.rawValue)
        t.shape = shape
        var tp = Onnx_TypeProto()
        tp.tensorType = t
        var v = Onnx_ValueInfoProto()
        v.name = name
        v.type = tp
        return v
    }

    static func conv3x3(stride: Int) -> [Onnx_AttributeProto] {
        [attr("kernel_shape", ints: [3, 3]), attr("pads", ints: [1, 1, 1, 1]), attr("strides", ints: [Int64(stride), Int64(stride)])]
    }

    static func attr(_ name: String, int i: Int64) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto(); a.name = name; a.type = .int; a.i = i; return a
    }
    static func attr(_ name: String, ints: [Int64]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto(); a.name = name; a.type = .ints; a.ints = ints; return a
    }
    static func attr(_ name: String, float f: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto(); a.name = name; a.type = .float; a.f = f; return a
    }

    /// Accumulates nodes and initializers; names values after the node that makes them.
    struct GraphBuilder {
        var graph = Onnx_GraphProto()

        mutating func constant(_ name: String, _ dims: [Int], _ values: [Float]) -> String {
            var t = Onnx_TensorProto()
            t.name = name
            t.dims = dims.map(Int64.init)
            t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
            var raw = [UInt8](); raw.reserveCapacity(values.count * 4)
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { raw.append(contentsOf: $0) } }
            t.rawData = Data(raw)
            graph.initializer.append(t)
            return name
        }

        mutating func int64s(_ name: String, _ values: [Int64]) -> String {
            var t = Onnx_TensorProto()
            t.name = name
            t.dims = [Int64(values.count)]
            t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
            t.int64Data = values
            graph.initializer.append(t)
            return name
        }

        mutating func node(_ op: String, _ inputs: [String], name: String,
                           attributes: [Onnx_AttributeProto] = [], output: String? = nil) -> String {
            var n = Onnx_NodeProto()
            n.opType = op
            n.name = name
            n.input = inputs
            let out = output ?? name
            n.output = [out]
            n.attribute = attributes
            graph.node.append(n)
            return out
        }

        /// BatchNormalization in inference mode (running statistics).
        mutating func batchNorm(_ prefix: String, _ x: String, _ bn: BatchNorm, epsilon: Double) -> String {
            let c = bn.channels
            let inputs = [x, constant("\(prefix).weight", [c], bn.weight.data), constant("\(prefix).bias", [c], bn.bias.data),
                          constant("\(prefix).running_mean", [c], bn.runningMean.data),
                          constant("\(prefix).running_var", [c], bn.runningVar.data)]
            return node("BatchNormalization", inputs, name: prefix, attributes: [ONNXExport.attr("epsilon", float: Float(epsilon))])
        }
    }
}
