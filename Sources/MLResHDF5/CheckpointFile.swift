import CHDF5
import Foundation

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
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw H5Problem("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw H5Problem("cannot open: \(String(cString: strerror(errno)))") }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw H5Problem("is a directory, not a checkpoint file") }
        if (st.st_mode & S_IFMT) != S_IFREG { throw H5Problem("is not a regular file") }
        if st.st_size == 0 { throw H5Problem("is empty (0 bytes), not an HDF5 file") }

        // HDF5 programs lock the files they open (flock; exclusive for writing). Ask for a
        // shared lock, as HDF5 itself would: a writer's lock means the bytes may be changing.
        if flock(fd, LOCK_SH | LOCK_NB) != 0 {
            if errno == EWOULDBLOCK {
                throw H5Problem("is locked by another process (an HDF5 program has it open for writing); "
                    + "wait until that program has closed it, or stop it")
            }
            // ENOLCK, EOPNOTSUPP...: a file system without locks (NFS, read-only mounts).
        }
        let bytes = try readAll(fd, expected: Int(st.st_size))
        let (base, version) = try superblock(bytes)
        return FileImage(bytes: bytes, identity: FileIdentity(st), baseAddress: base, superblockVersion: version)
    }

    private static func readAll(_ fd: Int32, expected: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: expected)
        var got = 0
        while got < expected {
            let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, expected - got) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw H5Problem("cannot read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }        // shrank meanwhile: parse what is there (it will say so)
            got += n
        }
        if got < expected { out.removeSubrange(got...) }
        return out
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
        let storedBase = le(b, baseAt, 8)
        let eof = le(b, baseAt + 16, 8)
        // HDF5 compares the stored end-of-file address with the file's size (user block included).
        _ = storedBase
        if eof > UInt64(b.count), eof < UInt64(Int.max / 2) {
            throw H5Problem("is truncated: its HDF5 superblock says it ends at byte \(eof), but it has \(b.count) bytes")
        }
        return (sb, version)
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
        if text.contains("version") {
            return "uses an HDF5 format feature newer than HDF5 1.10 (this build) reads; write it with "
                + "HDF5 1.10's format (h5py: libver=(\"earliest\", \"v110\")) (\(short))"
        }
        return "cannot be opened as HDF5, the file is corrupt (\(short))"
    }
}
