import CHDF5
import Foundation
import MLResModel

/// Which file a path named at one moment: device, inode, size and modification time. An
/// atomic replace (rename over the path, as every mlres writer publishes) gives a new inode, so
/// two identities differ whenever the path was replaced in between.
public struct FileIdentity: Equatable, Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    /// st_mtim in nanoseconds since the epoch.
    public var modifiedNanoseconds: Int64

    init(_ st: stat) {
        device = UInt64(st.st_dev); inode = UInt64(st.st_ino); size = Int64(st.st_size)
        modifiedNanoseconds = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }

    /// The identity of the regular file at `path` now (symlinks followed), or nil when there is
    /// none (missing, a folder, a FIFO...).
    public init?(path: String) {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        self.init(st)
    }
}

/// The bytes of one checkpoint file, read ONCE through one descriptor. Everything a reader
/// reports about the file — its SHA-256, the global-heap check, the HDF5 parse (from an
/// in-memory image, HDF5's "core" driver) — is computed from these same bytes, so a file
/// replaced by rename while it is read gives the old file or the new one, never a mixture,
/// and the digest always belongs to the bytes used (docs/checkpoint-format.md, "How we read").
///
/// Reading also diagnoses, by name, what the layer below would report as "corrupt": a file
/// locked by another HDF5 program, one marked open-for-write by a writer that did not close
/// it, a truncated file, a superblock or address size this reader does not support.
struct FileImage {
    /// The whole file.
    let bytes: [UInt8]
    /// Device, inode, size and modification time of the open file the bytes were read from.
    let identity: FileIdentity
    /// Byte offset of the HDF5 superblock: the size of the user block (0 without one). HDF5
    /// addresses inside the file are relative to it.
    let baseAddress: Int
    /// Superblock version: 0/1 (HDF5's oldest layout, h5py's default, no metadata
    /// checksums) or 2/3 (checksummed metadata, what our writer produces).
    let superblockVersion: Int

    var size: Int { bytes.count }

    static let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]

    /// Reads `path` once. Throws ``H5Problem`` with the reason a user can act on.
    static func load(path: String) throws -> FileImage {
        let file: InputFile
        do { file = try InputFile(path: path) } catch let f as InputFile.Failure {
            if f.reason.hasPrefix("is a directory") { throw H5Problem("is a directory, not a checkpoint file") }
            throw H5Problem(f.reason)
        }
        if file.size == 0 { throw H5Problem("is empty (0 bytes), not an HDF5 file") }
        if let holder = lockHolder(file.descriptor) {
            throw H5Problem(holder, retryable: true)
        }
        let bytes: [UInt8]
        do { bytes = try file.readAll() } catch let f as InputFile.Failure { throw H5Problem(f.reason) }
        let (base, version) = try superblock(bytes)
        return FileImage(bytes: bytes, identity: FileIdentity(file.status), baseAddress: base, superblockVersion: version)
    }

    /// HDF5 programs lock the files they open: HDF5 1.10 with flock (exclusive for writing),
    /// other builds with fcntl record locks. A writer's lock means the bytes may be changing.
    /// Returns the refusal, or nil when no writer holds a lock.
    private static func lockHolder(_ fd: Int32) -> String? {
        let wayOut = "wait until that program has closed it, or stop it"
        // A shared flock, as HDF5 itself asks for when it opens a file read-only.
        if flock(fd, LOCK_SH | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK {
                return "is locked by another process (an HDF5 program has it open for writing); \(wayOut)"
            }
            // ENOLCK, EOPNOTSUPP...: a file system without locks (NFS, read-only mounts).
        }
        // A write record lock held by another process (fcntl; HDF5 builds without flock).
        var lk = Glibc.flock()
        lk.l_type = Int16(F_RDLCK); lk.l_whence = Int16(SEEK_SET); lk.l_start = 0; lk.l_len = 0
        if fcntl(fd, F_GETLK, &lk) == 0, lk.l_type == Int16(F_WRLCK) {
            return "is locked by another process (process \(lk.l_pid) holds a write lock on it); \(wayOut)"
        }
        return nil
    }

    private static func le(_ b: [UInt8], _ at: Int, _ n: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in (0..<n).reversed() { v = v << 8 | UInt64(b[at + k]) }
        return v
    }

    /// Finds and checks the superblock (at 0, 512, 1024, 2048, ... as HDF5 searches for it).
    /// Returns its offset (the base address) and version.
    static func superblock(_ b: [UInt8]) throws -> (base: Int, version: Int) {
        var at = 0
        var found: Int?
        while at + 8 <= b.count {
            if Array(b[at..<(at + 8)]) == signature { found = at; break }
            at = at == 0 ? 512 : at * 2
        }
        guard let sb = found else {
            throw H5Problem("is not an HDF5 file (no HDF5 signature found, \(b.count) bytes)")
        }
        let truncated = H5Problem("is truncated (\(b.count) bytes): it ends inside the HDF5 superblock")
        guard sb + 9 <= b.count else { throw truncated }
        let version = Int(b[sb + 8])
        guard version <= 3 else {
            throw H5Problem("cannot be opened as HDF5: superblock version \(version) is not one HDF5 1.10 (this build) "
                + "reads; the file is corrupt, or was written by a newer HDF5: write it with HDF5 1.10's format "
                + "(h5py: libver=(\"earliest\", \"v110\"))")
        }
        // Field positions: HDF5 file format specification, "Superblock" (versions 0-1 and 2-3).
        let sizesAt = version >= 2 ? sb + 9 : sb + 13
        let baseAt = version >= 2 ? sb + 12 : (version == 1 ? sb + 28 : sb + 24)
        guard baseAt + 24 <= b.count else { throw truncated }
        let offsets = Int(b[sizesAt]), lengths = Int(b[sizesAt + 1])
        guard offsets == 8, lengths == 8 else {
            throw H5Problem("cannot be opened as HDF5: it uses \(offsets)-byte addresses and \(lengths)-byte lengths; mlres reads HDF5's "
                + "default 8-byte ones (write it without changing H5Pset_sizes)")
        }
        if version >= 3 && (b[sb + 11] & 0x05) != 0 {
            throw H5Problem("is marked open-for-write by an HDF5 writer that did not close it (a crash or kill "
                + "while writing, or a program that still has it open); if no program is writing it, "
                + "`h5clear -s FILE` clears the mark")
        }
        if let driver = multiFileDriver(b, sb: sb, version: version, baseAt: baseAt) { throw H5Problem(driver) }
        let storedBase = le(b, baseAt, 8)
        let eof = le(b, baseAt + 16, 8)
        // HDF5 compares the stored end-of-file address with the file's size (user block included).
        _ = storedBase
        if eof > UInt64(b.count), eof < UInt64(Int.max / 2) {
            throw H5Problem("is truncated: its HDF5 superblock says it ends at byte \(eof), but it has \(b.count) bytes")
        }
        return (sb, version)
    }

    /// A file written with one of HDF5's multi-file drivers names it in its superblock: in the
    /// driver information block (superblock 0/1) or in the superblock extension's driver info
    /// message (2/3), as the 8-byte driver id "NCSAfami" (family) or "NCSAmult" (multi, split).
    /// Such a file is one piece of a checkpoint spread over several files; without this check
    /// a family member would be called truncated. Returns the refusal, or nil.
    static func multiFileDriver(_ b: [UInt8], sb: Int, version: Int, baseAt: Int) -> String? {
        let undefined = UInt64.max
        var region: Range<Int>?
        if version <= 1 {
            let driverAddress = le(b, baseAt + 24, 8)          // driver information block
            if driverAddress != undefined, driverAddress < UInt64(b.count) {
                let at = sb + Int(driverAddress)
                region = at..<min(b.count, at + 16)
            }
        } else {
            let extensionAddress = le(b, baseAt + 8, 8)        // superblock extension object header
            if extensionAddress != undefined, extensionAddress < UInt64(b.count) {
                let at = sb + Int(extensionAddress)
                region = at..<min(b.count, at + 1024)
            }
        }
        guard let r = region, r.count >= 8 else { return nil }
        let bytes = Array(b[r])
        func has(_ id: String) -> Bool {
            let pattern = Array(id.utf8)
            return bytes.count >= 8 && (0...(bytes.count - 8)).contains { Array(bytes[$0..<($0 + 8)]) == pattern }
        }
        if has("NCSAfami") {
            return "is one member of an HDF5 file family (written with HDF5's family driver): the checkpoint is "
                + "spread over several files and this is only one of them; mlres reads single files: join the members "
                + "with `h5repart -family_to_single NAME%d.h5 one.h5` (the member names with %d for their number)"
        }
        if has("NCSAmult") {
            return "is one part of an HDF5 file written with the split or multi driver (metadata and raw data in "
                + "separate files, e.g. NAME-m.h5 and NAME-r.h5); mlres reads single files: write it again with "
                + "HDF5's default driver (h5py: no driver= argument)"
        }
        return nil
    }

    private nonisolated(unsafe) static var imageCounter = 0

    /// Opens the image with HDF5's core (in-memory) driver, read-only; the file on disk is
    /// not touched again. Callers hold the HDF5 lock and close the returned identifier.
    func openHDF5() throws -> hid_t {
        let fapl = H5Object.plist(try H5.check(H5Pcreate(mlres_H5P_FILE_ACCESS()), "cannot open"))
        try H5.check(status: H5Pset_fapl_core(fapl.id, 1 << 20, false), "cannot open")
        try H5.check(status: H5Pset_fclose_degree(fapl.id, H5F_CLOSE_STRONG), "cannot open")
        let st = bytes.withUnsafeBytes { H5Pset_file_image(fapl.id, UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count) }
        try H5.check(status: st, "cannot open")
        // The core driver names the image; it must not be an existing path.
        Self.imageCounter += 1
        let name = "/nonexistent/mlres-file-image-\(getpid())-\(Self.imageCounter)"
        let fid = H5Fopen(name, mlres_H5F_ACC_RDONLY(), fapl.id)
        if fid < 0 { throw H5Problem(Self.diagnoseOpenFailure(H5.errorStack())) }
        return fid
    }

    /// HDF5's reason for refusing to open a file, as something a user can act on.
    static func diagnoseOpenFailure(_ stack: [String]) -> String {
        let text = stack.joined(separator: " <- ")
        let short = stack.isEmpty ? "HDF5 gave no detail" : "HDF5: " + (stack.count == 1 ? stack[0] : "\(stack[0]) <- \(stack[stack.count - 1])")
        if text.contains("open for write") || text.contains("h5clear") {
            return "is marked open-for-write by an HDF5 writer that did not close it; if no program is writing it, `h5clear -s FILE` clears the mark (\(short))"
        }
        if text.contains("truncated") { return "is truncated (\(short))" }
        if let newer = H5.newerFormat(stack) { return "\(newer) (\(short))" }
        if text.contains("family driver") || text.contains("multi driver") {
            return "was written with one of HDF5's multi-file drivers; mlres reads single files: write it again with "
                + "HDF5's default driver (\(short))"
        }
        return "cannot be opened as HDF5, the file is corrupt (\(short))"
    }
}
