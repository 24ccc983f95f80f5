import CHDF5
import Foundation
@testable import MLResHDF5
import MLResModel

/// In-place edits of an HDF5 file, for tests that need files the writer refuses to produce
/// (wrong shapes, gaps, bad attributes). Unlike ``CheckpointIO/write(_:to:options:)`` these
/// open an existing file for writing; never use them on a file that matters.
enum H5Edit {
    enum AttributeValue { case int(Int), ints([Int]), double(Double), string(String) }

    private static func withFile(_ path: String, _ body: (hid_t) throws -> Void) throws {
        try H5.locked {
            let fid = try H5.check(H5Fopen(path, mlres_H5F_ACC_RDWR(), mlres_H5P_DEFAULT()), "cannot open \(path)")
            defer { _ = H5Fclose(fid) }
            try body(fid)
        }
    }

    /// Removes the link at `path` (a group or dataset).
    static func delete(_ file: String, _ path: String) throws {
        try withFile(file) { try H5.check(status: H5Ldelete($0, path, mlres_H5P_DEFAULT()), "cannot delete \(path)") }
    }

    /// Renames a link (e.g. blocks/1 -> blocks/2 to make a gap).
    static func move(_ file: String, _ from: String, _ to: String) throws {
        try withFile(file) {
            try H5.check(status: H5Lmove($0, from, $0, to, mlres_H5P_DEFAULT(), mlres_H5P_DEFAULT()),
                         "cannot move \(from)")
        }
    }

    /// Creates a group (with parents).
    static func addGroup(_ file: String, _ path: String) throws {
        try withFile(file) { fid in
            let lcpl = H5Object.plist(try H5.check(H5Pcreate(mlres_H5P_LINK_CREATE()), "lcpl"))
            _ = H5Pset_create_intermediate_group(lcpl.id, 1)
            _ = H5Object.group(try H5.check(H5Gcreate2(fid, path, lcpl.id, mlres_H5P_DEFAULT(), mlres_H5P_DEFAULT()),
                                            "cannot create \(path)"))
        }
    }

    /// Replaces (or creates) the dataset at `path` with `values` of `shape`, stored as float32
    /// or float64, contiguous (no filters) unless `fletcher32`; with its format 1.1 digest
    /// unless `digest` is false (so that a test sees the problem it made, not a digest).
    static func putTensor(_ file: String, _ path: String, shape: [Int], values: [Double],
                          float64: Bool = false, fletcher32: Bool = true, digest: Bool = true) throws {
        try withFile(file) { fid in
            if H5Lexists(fid, path, mlres_H5P_DEFAULT()) > 0 { _ = H5Ldelete(fid, path, mlres_H5P_DEFAULT()) }
            var dims = shape.map { hsize_t($0) }
            let space = H5Object.space(try H5.check(H5Screate_simple(Int32(dims.count), &dims, nil), "space"))
            let dcpl = H5Object.plist(try H5.check(H5Pcreate(mlres_H5P_DATASET_CREATE()), "dcpl"))
            if fletcher32 {
                _ = H5Pset_chunk(dcpl.id, Int32(dims.count), &dims)
                _ = H5Pset_fletcher32(dcpl.id)
            }
            let lcpl = H5Object.plist(try H5.check(H5Pcreate(mlres_H5P_LINK_CREATE()), "lcpl"))
            _ = H5Pset_create_intermediate_group(lcpl.id, 1)
            let ftype = float64 ? mlres_H5T_IEEE_F64LE() : mlres_H5T_IEEE_F32LE()
            let d = H5Object.dataset(try H5.check(H5Dcreate2(fid, path, ftype, space.id, lcpl.id, dcpl.id,
                                                             mlres_H5P_DEFAULT()), "cannot create \(path)"))
            try H5.check(status: values.withUnsafeBytes {
                H5Dwrite(d.id, mlres_H5T_NATIVE_DOUBLE(), mlres_H5S_ALL(), mlres_H5S_ALL(), mlres_H5P_DEFAULT(), $0.baseAddress)
            }, "cannot write \(path)")
            if digest && !float64 {
                let sha = ContentDigest.tensor(path: path, values.map { Float($0) }, shape: shape)
                try AttributeWriter(obj: d.id, label: path).fixedString(ContentDigest.tensorAttribute, sha)
            }
        }
    }

    /// Replaces (or creates) attribute `name` of the object at `objectPath`.
    static func setAttribute(_ file: String, _ objectPath: String, _ name: String, _ value: AttributeValue) throws {
        try withFile(file) { fid in
            let o = try H5.check(H5Oopen(fid, objectPath, mlres_H5P_DEFAULT()), "cannot open \(objectPath)")
            defer { _ = H5Oclose(o) }
            if H5Aexists(o, name) > 0 { _ = H5Adelete(o, name) }
            let w = AttributeWriter(obj: o, label: objectPath)
            switch value {
            case .int(let v): try w.int(name, v)
            case .ints(let v): try w.ints(name, v)
            case .double(let v): try w.double(name, v)
            case .string(let v): try w.string(name, v)
            }
        }
    }

    /// Deletes attribute `name` of the object at `objectPath`.
    static func deleteAttribute(_ file: String, _ objectPath: String, _ name: String) throws {
        try withFile(file) { fid in
            let o = try H5.check(H5Oopen(fid, objectPath, mlres_H5P_DEFAULT()), "cannot open \(objectPath)")
            defer { _ = H5Oclose(o) }
            try H5.check(status: H5Adelete(o, name), "cannot delete attribute \(name)")
        }
    }
}
