import MLResHDF5
import MLResModel

/// Something that turns a batch of standardised images into logits.
///
/// The server does all request handling, batching and input standardisation; a backend only
/// runs the network. The oneDNN engine (``EngineBackend``) conforms; the model repository builds
/// one per loaded checkpoint through its ``ModelLoader``.
public protocol InferenceBackend: Sendable {
    /// C, H, W of one image.
    var inputShape: [Int] { get }
    /// K, the number of logits per image.
    var numClasses: Int { get }
    /// Logits `N×K` (row-major) of `count` images given as `N×C×H×W` float32, already
    /// standardised (scaled to [0, 1], minus `inputMean`, divided by `inputStd`).
    func infer(_ input: [Float], count: Int) throws -> [Float]
}

/// A checkpoint ready to serve: its network (for metadata and standardisation) and a backend.
public struct LoadedModel: Sendable {
    /// The network as read from the file (parameters are kept for metadata; small next to data).
    public var network: Network
    /// What runs the forward pass.
    public var backend: any InferenceBackend
    /// Short name of the backend kind, reported in metadata (e.g. "onednn").
    public var backendName: String
    /// SHA-256 of the exact bytes the network was read from, when the loader read a file
    /// (``CheckpointIO/load(path:)``); nil lets the repository hash the file itself.
    public var sha256: String?
    /// Identity of the open file those bytes were read from (``LoadedCheckpoint/identity``).
    /// With it and ``sha256`` the repository knows exactly which file it serves, even when the
    /// path was replaced during the load; without them it compares the path's identity before
    /// and after the load and retries.
    public var fileIdentity: FileIdentity?

    public init(network: Network, backend: any InferenceBackend, backendName: String, sha256: String? = nil,
                fileIdentity: FileIdentity? = nil) {
        self.network = network; self.backend = backend; self.backendName = backendName; self.sha256 = sha256
        self.fileIdentity = fileIdentity
    }
}

/// Options the server passes to a loader.
public struct LoaderOptions: Sendable {
    /// Threads the backend may use for one batch (`--threads`).
    public var threads: Int
    /// Most images the batcher hands one `infer` call (`--max-batch`); backends that plan per
    /// batch size use it to bound their plans.
    public var maxBatch: Int
    public init(threads: Int, maxBatch: Int = 64) { self.threads = threads; self.maxBatch = maxBatch }
}

/// Reads the checkpoint at `path` (already checked to be inside the models folder) and builds a
/// backend for it; throws an error whose description names the problem.
public typealias ModelLoader = @Sendable (_ path: String, _ options: LoaderOptions) throws -> LoadedModel
