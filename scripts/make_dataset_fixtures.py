#!/usr/bin/env python3
"""Write tiny dataset fixtures in the official binary formats (plain python3, no numpy).

    python3 scripts/make_dataset_fixtures.py [OUT_DIR]     # default: fixtures/datasets

Every pixel and label follows a formula of the image's global index g (0-based, across the
split's files in official order), its channel c, row y and column x, so tests can check exact
values. The formulas (Tests/MLResTrainingTests/DatasetFixtures.swift repeats them):

  cifar10/        data_batch_1..5.bin: 8 records each (g = 0..39), test_batch.bin: 20 records
                  (g = 0..19). Record = label byte + R, G, B planes (32x32, row-major).
                  label = (g*3 + split) % 10            split = 0 train, 1 test
                  pixel = (g*31 + c*67 + y*5 + x*3 + split*101) % 256
  cifar100/       train.bin 20 records, test.bin 10. Record = coarse byte, fine byte, 3072 pixels.
                  coarse = (g + split) % 20, fine = (g*7 + 3 + split) % 100
                  pixel = (g*29 + c*53 + y*7 + x*2 + split*89) % 256
  stl10/          train_X.bin 3 images, test_X.bin 2 images, 3x96x96 each; every channel plane
                  stored COLUMN-MAJOR: byte x*96 + y of a plane holds pixel (row y, column x).
                  pixel = (g*13 + c*71 + y*3 + x*7 + split*37) % 256
                  train_y.bin / test_y.bin: one byte per image, on disk (g + split) % 10 + 1.
  fashion-mnist/  train-{images-idx3,labels-idx1}-ubyte.gz: 30 images, gzipped (mtime 0);
                  t10k-{images-idx3,labels-idx1}-ubyte: 12 images, uncompressed.
                  label = (g*7 + split) % 10, pixel = (g*17 + y*3 + x*5 + split*59) % 256 (28x28)
"""
import gzip
import os
import struct
import sys


def cifar10_records(n, split):
    out = bytearray()
    for g in range(n):
        out.append((g * 3 + split) % 10)
        for c in range(3):
            for y in range(32):
                for x in range(32):
                    out.append((g * 31 + c * 67 + y * 5 + x * 3 + split * 101) % 256)
    return out


def cifar100_records(n, split):
    out = bytearray()
    for g in range(n):
        out.append((g + split) % 20)
        out.append((g * 7 + 3 + split) % 100)
        for c in range(3):
            for y in range(32):
                for x in range(32):
                    out.append((g * 29 + c * 53 + y * 7 + x * 2 + split * 89) % 256)
    return out


def stl10_files(n, split):
    xs, ys = bytearray(), bytearray()
    for g in range(n):
        for c in range(3):
            for x in range(96):          # column-major: x outer, y inner
                for y in range(96):
                    xs.append((g * 13 + c * 71 + y * 3 + x * 7 + split * 37) % 256)
        ys.append((g + split) % 10 + 1)
    return xs, ys


def idx_files(n, split):
    images = bytearray(struct.pack(">IIII", 0x803, n, 28, 28))
    labels = bytearray(struct.pack(">II", 0x801, n))
    for g in range(n):
        labels.append((g * 7 + split) % 10)
        for y in range(28):
            for x in range(28):
                images.append((g * 17 + y * 3 + x * 5 + split * 59) % 256)
    return images, labels


def write(path, data, gz=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if gz:
        with open(path, "wb") as f:
            # mtime=0 and no file name: byte-identical output on every run.
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=9) as z:
                z.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "datasets")
    # CIFAR-10: 5 training files of 8 records (global index continues across files).
    train = cifar10_records(40, 0)
    rec = 1 + 3072
    for i in range(5):
        write(os.path.join(out, "cifar10", "data_batch_%d.bin" % (i + 1)), train[i * 8 * rec:(i + 1) * 8 * rec])
    write(os.path.join(out, "cifar10", "test_batch.bin"), cifar10_records(20, 1))
    write(os.path.join(out, "cifar100", "train.bin"), cifar100_records(20, 0))
    write(os.path.join(out, "cifar100", "test.bin"), cifar100_records(10, 1))
    for split, name, n in ((0, "train", 3), (1, "test", 2)):
        xs, ys = stl10_files(n, split)
        write(os.path.join(out, "stl10", name + "_X.bin"), xs)
        write(os.path.join(out, "stl10", name + "_y.bin"), ys)
    images, labels = idx_files(30, 0)
    write(os.path.join(out, "fashion-mnist", "train-images-idx3-ubyte.gz"), images, gz=True)
    write(os.path.join(out, "fashion-mnist", "train-labels-idx1-ubyte.gz"), labels, gz=True)
    images, labels = idx_files(12, 1)
    write(os.path.join(out, "fashion-mnist", "t10k-images-idx3-ubyte"), images)
    write(os.path.join(out, "fashion-mnist", "t10k-labels-idx1-ubyte"), labels)
    print("wrote fixtures under", os.path.normpath(out))


if __name__ == "__main__":
    main()
