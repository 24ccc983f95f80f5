import MLResHDF5
import MLResModel

/// Loaders that turn a checkpoint file into a served model. The command line picks one; this
/// is the one place where a backend is chosen for a checkpoint.
public enum ModelLoaders {
    /// Reads the checkpoint with ``CheckpointIO`` (which validates it) and builds the backend
    /// `makeBackend` returns, reported under `backendName`.
    public static func checkpoint(
        backendName: String,
        makeBackend: @escaping @Sendable (Network, LoaderOptions) throws -> any InferenceBackend
    ) -> ModelLoader {
        return { path, options in
            let checkpoint = try CheckpointIO.read(path: path)
            // Issue 12: never serve non-finite parameters (the engine's ReLU would turn a NaN
            // into plausible logits). The checkpoint reader is to refuse them for every command;
            // until it does, the server checks here, naming the tensor as `verify` does.
            for t in checkpoint.network.namedTensors {
                if let i = t.tensor.data.firstIndex(where: { !$0.isFinite }) {
                    throw ServerSetupError("\(path): /\(t.path)[\(i)] = \(t.tensor.data[i]), expected a finite number; a checkpoint with non-finite parameters is not served")
                }
            }
            let backend = try makeBackend(checkpoint.network, options)
            return LoadedModel(network: checkpoint.network, backend: backend, backendName: backendName)
        }
    }

    /// Checkpoint file + the oneDNN engine (``EngineBackend``): the default of `mlres-eval serve`.
    public static let engine: ModelLoader = checkpoint(backendName: "onednn") { network, options in
        try EngineBackend(network: network, threads: options.threads, maxBatch: options.maxBatch)
    }
}
