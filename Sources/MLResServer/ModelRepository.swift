import Foundation
import MLResHDF5
import MLResModel

/// Why a repository request failed; each maps to one HTTP status.
public enum RepositoryError: Error, CustomStringConvertible, Sendable {
    /// The name is not a plain file stem (has `/`, `..`, a leading dot, odd characters).
    case badName(String, reason: String)
    /// No `NAME.h5` in the models folder (or it is not a regular file).
    case notFound(String)
    /// No such model is loaded.
    case notLoaded(String)
    /// The file exists but did not load; the previous version (if any) keeps serving.
    case loadFailed(String, message: String)

    public var description: String {
        switch self {
        case .badName(let n, let r): "bad model name '\(n)': \(r)"
        case .notFound(let n): "no checkpoint '\(n).h5' in the models folder"
        case .notLoaded(let n): "model '\(n)' is not loaded"
        case .loadFailed(let n, let m): "loading model '\(n)' failed: \(m)"
        }
    }
}

/// Identity of a file on disk, to notice replacement (an atomic rename gives a new inode).
typealias FileStamp = FileIdentity

/// What the server reports about one loaded model.
public struct ModelInfo: Sendable {
    public var name: String
    /// 1 for the first load, +1 for every successful reload.
    public var version: Int
    /// SHA-256 of the checkpoint file that was loaded.
    public var sha256: String
    public var path: String
    public var loadedAt: Date
    public var network: Network
    public var backendName: String
}

/// Status of one name in the repository (loaded or not, last error).
public struct ModelStatus: Sendable {
    public var name: String
    public var info: ModelInfo?
    /// The error of the last failed load, cleared by a successful one.
    public var lastError: String?
    public var loadFailures: Int
    public var batcher: DynamicBatcher?
    public var ready: Bool { info != nil && batcher != nil }
}

/// The model repository: a folder of `NAME.h5` checkpoints, loaded through a ``ModelLoader``.
///
/// Only names made of letters, digits, `_`, `-` and `.` (not starting with `.`) are valid, so
/// `.tmp-*` files of an atomic write are never read and no name can leave the folder; a file
/// whose real path (symlinks resolved) is outside the folder is refused. Loads are serialised
/// and run on their own thread, off the HTTP threads; a failed reload keeps the previous version.
public final class ModelRepository: @unchecked Sendable {
    /// The models folder, symlinks resolved.
    public let directory: String
    private let loader: ModelLoader
    private let loaderOptions: LoaderOptions
    private let batching: BatchingOptions
    private let metrics: ServerMetrics
    /// Held while a load runs: loads are serialised.
    private let loadLock = NSLock()
    private let lock = NSLock()
    // Guarded by `lock`:
    private var slots: [String: Slot] = [:]

    private struct Slot {
        var info: ModelInfo?
        var stamp: FileStamp?
        var batcher: DynamicBatcher?
        var lastError: String?
        var failedStamp: FileStamp?
        var loadFailures = 0
    }

    /// - Throws: ``RepositoryError/notFound`` style error when `directory` is not a folder.
    public init(directory: String, loader: @escaping ModelLoader, loaderOptions: LoaderOptions,
                batching: BatchingOptions, metrics: ServerMetrics) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue,
              let real = realpath(directory, nil) else {
            throw ServerSetupError("--models \(directory): not a readable folder")
        }
        self.directory = String(cString: real)
        free(real)
        self.loader = loader; self.loaderOptions = loaderOptions
        self.batching = batching; self.metrics = metrics
    }

    /// Checks that `name` is a plain checkpoint stem; returns the problem or nil.
    public static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "the name is empty" }
        if name.contains("/") { return "a model name cannot contain '/'" }
        if name.contains("..") { return "a model name cannot contain '..'" }
        if name.hasPrefix(".") { return "a model name cannot start with '.'" }
        if name.utf8.count > 200 { return "a model name is at most 200 bytes" }
        let ok = name.unicodeScalars.allSatisfy {
            ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") || ($0 >= "0" && $0 <= "9")
                || $0 == "_" || $0 == "-" || $0 == "."
        }
        return ok ? nil : "a model name may only hold letters, digits, '_', '-' and '.'"
    }

    /// The checkpoint path of a valid name, checked to be a regular file inside the folder.
    func checkpointPath(_ name: String) throws -> String {
        if let p = ModelRepository.nameProblem(name) { throw RepositoryError.badName(name, reason: p) }
        let path = directory + "/" + name + ".h5"
        /// What is wrong with something that exists at `p` but is not a readable regular file.
        func unreadable(_ p: String) -> RepositoryError? {
            var st = stat()
            guard lstat(p, &st) == 0 else { return nil }
            do { _ = try InputFile(path: p) } catch let f as InputFile.Failure {
                return .loadFailed(name, message: "\(name).h5 \(f.reason)")
            } catch {}
            return nil
        }
        guard let real = realpath(path, nil) else { throw unreadable(path) ?? RepositoryError.notFound(name) }
        let resolved = String(cString: real)
        free(real)
        guard resolved.hasPrefix(directory + "/") else {
            throw RepositoryError.loadFailed(name, message: "\(name).h5 resolves outside the models folder")
        }
        guard FileStamp(path: resolved) != nil else { throw unreadable(resolved) ?? RepositoryError.notFound(name) }
        return resolved
    }

    /// Names of the `*.h5` files in the folder that are valid model names.
    public func checkpointNames() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return files.filter { $0.hasSuffix(".h5") && !$0.contains(".tmp-") }
            .map { String($0.dropLast(3)) }
            .filter { ModelRepository.nameProblem($0) == nil }
            .sorted()
    }

    /// Loads (or reloads) `NAME.h5`; on failure the previous version keeps serving and the
    /// error is remembered for the model's status.
    @discardableResult
    public func load(_ name: String) async throws -> ModelInfo {
        if let p = ModelRepository.nameProblem(name) { throw RepositoryError.badName(name, reason: p) }
        // A thread of its own: reading a checkpoint blocks, and neither Swift's cooperative
        // pool nor Dispatch's global pool (one thread per core each) should wait on it.
        let result: Result<ModelInfo, RepositoryError> = await withCheckedContinuation { cont in
            Thread.detachNewThread {
                self.loadLock.lock()
                let r = self.loadNow(name)
                self.loadLock.unlock()
                cont.resume(returning: r)
            }
        }
        return try result.get()
    }

    /// Loads every valid `*.h5` of the folder; returns the errors by name.
    @discardableResult
    public func loadAll() async -> [String: String] {
        var errors: [String: String] = [:]
        for name in checkpointNames() {
            do { try await load(name) } catch { errors[name] = "\(error)" }
        }
        return errors
    }

    /// One polling pass: loads new files, reloads replaced ones, unloads removed ones. A file
    /// that failed to load is retried only once it changes.
    public func poll() async {
        let names = Set(checkpointNames())
        let known: [String: Slot] = lock.withLock { slots }
        for name in names.sorted() {
            let stamp = FileStamp(path: directory + "/" + name + ".h5")
            let slot = known[name]
            if stamp == nil || stamp == slot?.stamp || stamp == slot?.failedStamp { continue }
            _ = try? await load(name)
        }
        for (name, slot) in known where !names.contains(name) && slot.info != nil {
            await unload(name)
        }
    }

    /// Stops serving `name` (after its queued requests ran).
    public func unload(_ name: String) async {
        let batcher: DynamicBatcher? = lock.withLock {
            let b = slots[name]?.batcher
            slots[name] = nil
            metrics.setModelsLoaded(slots.values.filter { $0.info != nil }.count)
            return b
        }
        await batcher?.stop()
    }

    /// Status of one name, or nil when the repository never saw it.
    public func status(_ name: String) -> ModelStatus? {
        lock.withLock {
            slots[name].map { ModelStatus(name: name, info: $0.info, lastError: $0.lastError,
                                          loadFailures: $0.loadFailures, batcher: $0.batcher) }
        }
    }

    /// Status of every name the repository knows, sorted by name.
    public func allStatuses() -> [ModelStatus] {
        lock.withLock {
            slots.keys.sorted().map { n in
                let s = slots[n]!
                return ModelStatus(name: n, info: s.info, lastError: s.lastError,
                                   loadFailures: s.loadFailures, batcher: s.batcher)
            }
        }
    }

    /// Stops every batcher after its queue drained.
    public func shutdown() async {
        let batchers: [DynamicBatcher] = lock.withLock { slots.values.compactMap(\.batcher) }
        for b in batchers { await b.stop() }
    }

    // Runs with `loadLock` held.
    private func loadNow(_ name: String) -> Result<ModelInfo, RepositoryError> {
        func fail(_ e: RepositoryError, stamp: FileStamp?) -> Result<ModelInfo, RepositoryError> {
            let recorded = lock.withLock { () -> Bool in
                // A name without a file gets no slot and no metric, so requests naming random
                // models cannot grow the table or the metric labels.
                if case .notFound = e, slots[name] == nil { return false }
                var s = slots[name] ?? Slot()
                s.lastError = "\(e)"
                s.failedStamp = stamp
                s.loadFailures += 1
                slots[name] = s
                return true
            }
            if recorded { metrics.loadFailed(model: name) }
            return .failure(e)
        }
        let path: String
        do { path = try checkpointPath(name) } catch let e as RepositoryError {
            return fail(e, stamp: nil)
        } catch { return fail(.loadFailed(name, message: "\(error)"), stamp: nil) }

        // A loader that reports the identity of the file it read (``ModelLoaders``: the bytes
        // are read once, hashed and parsed) tells exactly which file is served, even when the
        // path was replaced meanwhile: the next poll sees the newer identity and reloads. Other
        // loaders: compare the path's identity before and after, retrying a few times.
        var attempt = 0
        while true {
            attempt += 1
            guard let before = FileStamp(path: path) else { return fail(.notFound(name), stamp: nil) }
            let loaded: LoadedModel
            do { loaded = try loader(path, loaderOptions) } catch {
                // A lock held by a writer goes away without the file changing: let the poll retry.
                let retryable = (error as? CheckpointError)?.retryable == true
                return fail(.loadFailed(name, message: "\(error)"), stamp: retryable ? nil : before)
            }
            let stamp: FileStamp, sha: String
            if let id = loaded.fileIdentity, let digest = loaded.sha256 {
                (stamp, sha) = (id, digest)
            } else {
                do { sha = try loaded.sha256 ?? FileDigest.sha256(fileAt: path) } catch {
                    return fail(.loadFailed(name, message: "\(error)"), stamp: before)
                }
                if FileStamp(path: path) != before {
                    if attempt < 3 { continue }
                    return fail(.loadFailed(name, message: "the file kept changing while it was read"), stamp: nil)
                }
                stamp = before
            }
            if let problem = ModelRepository.consistencyProblem(loaded) {
                return fail(.loadFailed(name, message: problem), stamp: stamp)
            }
            return .success(install(name, loaded, path: path, sha: sha, stamp: stamp))
        }
    }

    /// Checks that the backend and the network agree and that standardisation is usable.
    static func consistencyProblem(_ m: LoadedModel) -> String? {
        let net = m.network
        guard net.inputShape.count == 3, net.inputShape.allSatisfy({ $0 > 0 }) else {
            return "input shape \(Tensor.describe(net.inputShape)) is not C,H,W"
        }
        if m.backend.inputShape != net.inputShape {
            return "backend input shape \(Tensor.describe(m.backend.inputShape)) differs from the network's \(Tensor.describe(net.inputShape))"
        }
        if m.backend.numClasses != net.numClasses || net.numClasses < 1 {
            return "backend has \(m.backend.numClasses) classes, the network \(net.numClasses)"
        }
        let c = net.inputShape[0]
        if net.inputMean.count != c || net.inputStd.count != c {
            return "input_mean/input_std need \(c) values"
        }
        if !net.inputMean.allSatisfy(\.isFinite) || !net.inputStd.allSatisfy({ $0.isFinite && $0 > 0 }) {
            return "input_mean/input_std must be finite and input_std positive"
        }
        return nil
    }

    private func install(_ name: String, _ loaded: LoadedModel, path: String, sha: String,
                         stamp: FileStamp) -> ModelInfo {
        lock.withLock {
            var s = slots[name] ?? Slot()
            let version = (s.info?.version ?? 0) + 1
            let info = ModelInfo(name: name, version: version, sha256: sha, path: path, loadedAt: Date(),
                                 network: loaded.network, backendName: loaded.backendName)
            let serving = ServingModel(version: version, inputShape: loaded.network.inputShape,
                                       numClasses: loaded.network.numClasses,
                                       inputMean: loaded.network.inputMean,
                                       inputStd: loaded.network.inputStd, classNames: loaded.network.classNames,
                                       backend: loaded.backend)
            if let b = s.batcher { b.replace(serving) }
            else { s.batcher = DynamicBatcher(name: name, model: serving, options: batching, metrics: metrics) }
            s.info = info; s.stamp = stamp; s.lastError = nil; s.failedStamp = nil
            slots[name] = s
            metrics.loadSucceeded(model: name)
            metrics.setModelsLoaded(slots.values.filter { $0.info != nil }.count)
            return info
        }
    }
}

/// A configuration problem found before the server starts (bad flag value, missing folder).
public struct ServerSetupError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ message: String) { description = message }
}
