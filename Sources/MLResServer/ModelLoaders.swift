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
            let loaded = try CheckpointIO.load(path: path)     // digest of the bytes parsed
            let backend = try makeBackend(loaded.checkpoint.network, options)
            return LoadedModel(network: loaded.checkpoint.network, backend: backend, backendName: backendName,
                               sha256: loaded.sha256, fileIdentity: loaded.identity)
        }
    }

    /// Checkpoint file + the oneDNN engine (``EngineBackend``): the default of `mlres-eval serve`.
    public static let engine: ModelLoader = checkpoint(backendName: "onednn") { network, options in
        try EngineBackend(network: network, threads: options.threads, maxBatch: options.maxBatch)
    }
}
