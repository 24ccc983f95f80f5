/// A dense float32 tensor in C (row-major) order, with PyTorch's layouts:
/// conv weights OIHW `[out, in, kh, kw]`, linear weights `[out, in]`, vectors `[n]`.
///
/// Storage is a plain Swift array: the model layer is value-typed so that surgery is
/// copy-on-write data manipulation. The engine keeps its own (blocked) copies.
public struct Tensor: Sendable, Equatable, CustomStringConvertible {
    public var shape: [Int]
    public var data: [Float]

    /// A tensor of `shape` filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        self.data = [Float](repeating: value, count: Tensor.count(of: shape))
    }

    /// A tensor of `shape` holding `data` (whose count must equal the product of `shape`).
    public init(shape: [Int], data: [Float]) {
        precondition(Tensor.count(of: shape) == data.count,
                     "tensor data has \(data.count) elements, shape \(shape) needs \(Tensor.count(of: shape))")
        self.shape = shape
        self.data = data
    }

    /// Number of elements.
    public var count: Int { data.count }

    /// Bytes of float32 payload.
    public var byteCount: Int { data.count * MemoryLayout<Float>.size }

    /// Product of the dimensions (1 for a scalar shape `[]`).
    public static func count(of shape: [Int]) -> Int { shape.reduce(1, *) }

    /// Shape written as `[a,b,c]`, as error messages print it.
    public static func describe(_ shape: [Int]) -> String {
        "[" + shape.map(String.init).joined(separator: ",") + "]"
    }

    public var description: String { "Tensor\(Tensor.describe(shape))" }

    /// True when every element is finite.
    public var isFinite: Bool { data.allSatisfy { $0.isFinite } }
}
