import Foundation
import Testing
@testable import MLResHDF5
import MLResModel

/// Wrong-schema files, each made by editing a valid file in place, must be refused with the
/// first problem named by its HDF5 path.
@Suite struct SchemaErrorTests {
    /// Writes the sample checkpoint (blocks 2-1, widths 4,8, input 2x6x6, 3 classes), applies
    /// `edit`, and returns the reader's message.
    func messageAfter(_ edit: (String) throws -> Void) throws -> String? {
        let dir = TempDir(); defer { dir.cleanup() }
        let path = dir.file("ckpt.h5")
        try CheckpointIO.write(sampleCheckpoint(), to: path)
        try edit(path)
        return checkpointErrorMessage { _ = try CheckpointIO.read(path: path) }
    }

    @Test func wrongTensorShape() throws {
        let msg = try messageAfter {
            try H5Edit.putTensor($0, "/model/stages/0/blocks/1/conv1/weight", shape: [4, 2, 3, 3],
                                 values: Array(repeating: 0.5, count: 72))
        }
        #expect(msg == "/model/stages/0/blocks/1/conv1/weight has shape [4,2,3,3], expected [4,4,3,3]")
    }

    @Test func wrongTensorDtype() throws {
        let msg = try messageAfter {
            try H5Edit.putTensor($0, "/model/head/fc/bias", shape: [3], values: [1, 2, 3], float64: true)
        }
        #expect(msg == "/model/head/fc/bias has dtype float64, expected float32")
    }

    @Test func missingTensor() throws {
        #expect(try messageAfter { try H5Edit.delete($0, "/model/stages/1/blocks/0/bn2/bias") }
                == "/model/stages/1/blocks/0/bn2/bias is missing")
        #expect(try messageAfter { try H5Edit.delete($0, "/model/stem") } == "/model/stem/conv/weight is missing")
        #expect(try messageAfter { try H5Edit.delete($0, "/lineage") } == "/lineage is missing")
    }

    @Test func badStepSize() throws {
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model/stages/0/blocks/1", "h", .double(-0.5)) }
                == "/model/stages/0/blocks/1: attribute h = -0.5, expected a finite number >= 0")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model/stages/1/blocks/0", "h", .double(.nan)) }
                == "/model/stages/1/blocks/0: attribute h = nan, expected a finite number >= 0")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model/stages/1/blocks/0", "h", .string("1")) }
                == "/model/stages/1/blocks/0: attribute h has type string, expected float64")
        #expect(try messageAfter { try H5Edit.deleteAttribute($0, "/model/stages/0/blocks/0", "h") }
                == "/model/stages/0/blocks/0: attribute h is missing")
    }

    @Test func negativeRunningVariance() throws {
        let msg = try messageAfter {
            try H5Edit.putTensor($0, "/model/stages/0/blocks/0/bn2/running_var", shape: [4], values: [1, 0, -0.25, 2])
        }
        #expect(msg == "/model/stages/0/blocks/0/bn2/running_var[2] = -0.25, expected a variance >= 0")
    }

    @Test func stageBlocksMismatch() throws {
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model", "stage_blocks", .ints([3, 1])) }
                == "/model/stages/0/blocks holds 2 blocks (0,1), but /model: attribute stage_blocks[0] = 3")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model", "stage_blocks", .ints([2])) }
                == "/model: attribute stage_blocks has 1 values, expected 2")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model", "stage_widths", .ints([4, 8, 16])) }
                == "/model: attribute stage_blocks has 2 values, expected 3")
    }

    @Test func gapInBlockNumbering() throws {
        let msg = try messageAfter { try H5Edit.move($0, "/model/stages/0/blocks/1", "/model/stages/0/blocks/2") }
        #expect(msg == "/model/stages/0/blocks/1 is missing (blocks present: 0,2; /model: attribute stage_blocks[0] = 2)")
        let lead = try messageAfter { try H5Edit.move($0, "/model/stages/0/blocks/1", "/model/stages/0/blocks/01") }
        #expect(lead == "/model/stages/0/blocks/01: block numbers are written without leading zeros")
    }

    @Test func wrongFormatOrVersion() throws {
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/", "format_version", .int(2)) }
                == "/: attribute format_version = 2, this reader supports version 1")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/", "format", .string("keras")) }
                == "/: attribute format = \"keras\", expected \"mlres.checkpoint\"")
        #expect(try messageAfter { try H5Edit.deleteAttribute($0, "/", "format") } == "/: attribute format is missing")
    }

    @Test func blockAttributesMustMatchArchitecture() throws {
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model/stages/1/blocks/0", "stride", .int(1)) }
                == "/model/stages/1/blocks/0: attribute stride = 1, expected 2 (block 0 of a later stage downsamples)")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model/stages/1/blocks/0", "in_channels", .int(8)) }
                == "/model/stages/1/blocks/0: attribute in_channels = 8, expected 4")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model", "input_shape", .ints([2, 6])) }
                == "/model: attribute input_shape has 2 values, expected 3")
        // Changing the widths alone contradicts the block attributes first, then the tensors.
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model", "stage_widths", .ints([4, 16])) }
                == "/model/stages/1/blocks/0: attribute out_channels = 8, expected 16")
        #expect(try messageAfter {
            try H5Edit.setAttribute($0, "/model", "stage_widths", .ints([4, 16]))
            try H5Edit.setAttribute($0, "/model/stages/1/blocks/0", "out_channels", .int(16))
        } == "/model/stages/1/blocks/0/conv1/weight has shape [8,4,3,3], expected [16,4,3,3]")
    }

    @Test func absurdAttributesAreRefusedBeforeAllocating() throws {
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model", "stage_widths", .ints([4, 1 << 40])) }
                == "/model: width 1099511627776 is larger than 65536")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/model", "num_classes", .int(-3)) }
                == "/model: the number of classes must be positive (got -3)")
    }

    @Test func optionalPartsAreCheckedWhenPresent() throws {
        #expect(try messageAfter { try H5Edit.delete($0, "/optimizer/momentum/model/stem/conv/weight") }
                == "/optimizer/momentum/model/stem/conv/weight is missing (momentum buffers must cover every trainable tensor or none)")
        #expect(try messageAfter { try H5Edit.putTensor($0, "/training/history/lr", shape: [2], values: [1, 2]) }
                == "/training/history/lr has 2 entries, but /training/history/blocks has 3")
        #expect(try messageAfter { try H5Edit.setAttribute($0, "/optimizer", "nesterov", .int(7)) }
                == "/optimizer: attribute nesterov = 7, expected 0 or 1")
    }

    @Test func unknownExtrasAreIgnored() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let path = dir.file("ckpt.h5")
        let ckpt = sampleCheckpoint()
        try CheckpointIO.write(ckpt, to: path)
        try H5Edit.addGroup(path, "/notes/by/someone")
        try H5Edit.addGroup(path, "/model/stages/0/blocks/extra")
        try H5Edit.setAttribute(path, "/model", "comment", .string("trained on a Tuesday"))
        try H5Edit.setAttribute(path, "/model/stages/0/blocks/1", "flops", .int(12345))
        try H5Edit.putTensor(path, "/model/head/fc/scale", shape: [1], values: [2])
        let back = try CheckpointIO.read(path: path)
        #expect(back == ckpt)
        #expect(sameTensorBits(back, ckpt))
    }

    @Test func verifyRequiresFletcher32AndFiniteValues() throws {
        let dir = TempDir(); defer { dir.cleanup() }
        let path = dir.file("ckpt.h5")
        try CheckpointIO.write(sampleCheckpoint(), to: path)
        _ = try CheckpointIO.verify(path: path)
        try H5Edit.putTensor(path, "/model/head/fc/bias", shape: [3], values: [1, .nan, 3])
        // Every reader refuses a non-finite parameter (issue 12, kind 1), verify included.
        #expect(checkpointErrorMessage { _ = try CheckpointIO.read(path: path) }
                == "/model/head/fc/bias[1] = nan, expected a finite number")
        #expect(checkpointErrorMessage { _ = try CheckpointIO.verify(path: path) }
                == "/model/head/fc/bias[1] = nan, expected a finite number")
        try H5Edit.putTensor(path, "/model/head/fc/bias", shape: [3], values: [1, 2, 3], fletcher32: false)
        #expect(checkpointErrorMessage { _ = try CheckpointIO.read(path: path) } == nil)
        #expect(checkpointErrorMessage { _ = try CheckpointIO.verify(path: path) }
                == "/model/head/fc/bias is not protected by the Fletcher32 checksum filter (format v1 requires it on every tensor)")
    }
}
