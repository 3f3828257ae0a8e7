"""Native CPU backend: bit-packed inference of xnorflow model files, bit-exact with the golden
model (``docs/semantics.md``) and as fast as the CPU allows.

:class:`NativeModel` runs a :class:`~xnorflow.model.Model` with the C kernels of ``bnn.c``:
XNOR + popcount on 64-bit words for binary layers, integer dot products for the 8-bit first layer
(VNNI ``vpdpbusd`` on AVX-512, its ±1 bytes expanded from the weight bits by one GFNI instruction),
thresholds as integer compares, several frames per weight pass and the batch split over threads.
Convolutions run directly on the channel-last feature map (no window copied): a binary
convolution XORs each window row's packed channel words, read in place, with the kernels of 8
output channels per 512-bit vector; the 8-bit first convolution takes 4 pixels per ``vpdpbusd``
step against 16 channels' ±1 bytes; max-pooling is the OR or AND of the window's bytes per
channel (docs/semantics.md §5.3). The layouts are described at the top of ``bnn.c``.
The instruction set is picked at run time (:func:`available_isas`, best first:
``avx512-vpopcntdq`` (with VNNI and GFNI), ``avx2``, ``neon``, ``portable``) and reported as
``isa``.

Why a compiler at first use and ``ctypes``: the README's one-line install needs no compiler, and
a user without one still installs and runs (on the golden model). The library is plain C with no
Python C-API, so one build serves every Python version; no ``-march=native``: each kernel carries
its own ``target`` attribute and ``__builtin_cpu_supports`` chooses, so a library built on one
x86-64 runs on any. It is compiled once into ``$XDG_CACHE_HOME/xnorflow/native/<hash>/`` (default
``~/.cache``; ``<hash>`` covers the source, the compiler and the flags), to a temporary file
renamed into place, so concurrent processes never see a partial library. ``$CC`` is honoured.
Without a working compiler :class:`NativeModel` says why once (a log record on the
``xnorflow.native`` logger, and its ``reason``), sets ``available = False`` and runs the golden
model instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..golden import FrameError, GoldenModel
from ..model import Model

__all__ = ["FrameError", "NativeModel", "available_isas", "benchmark", "build_count",
           "compiler_error"]

SOURCE = Path(__file__).with_name("bnn.c")
FLAGS = ("-O3", "-std=gnu11", "-shared", "-fPIC", "-pthread")
#: isa name -> the code of bnn.c's ``enum``, best first.
ISAS = {"avx512-vpopcntdq": 2, "avx2": 1, "neon": 3, "portable": 0}
_U8, _BITS, _CONV_U8, _CONV_BITS, _POOL = 0, 1, 2, 3, 4  # layer kinds of bnn.c
GROUP_ROWS = {_U8: 64, _BITS: 32}  # rows of a weight group (GROUP blocks of 16 or 8 rows)
_I32 = np.iinfo(np.int32)
_log = logging.getLogger(__name__)
_libs: dict[tuple, object] = {}  # (compiler, cache dir) -> CDLL, or the reason it failed
_builds = 0


class _Layer(ctypes.Structure):
    """bnn.c's ``xf_layer``, field for field."""

    _fields_ = [(name, ctypes.c_int32) for name in ("kind", "n", "m", "mp", "k", "nw")] + [
        ("w", ctypes.c_void_p), ("bound", ctypes.c_void_p)] + [
        (name, ctypes.c_int32) for name in ("ih", "iw", "ib", "kern", "stride", "pad",
                                            "pad_value", "oh", "ow", "ob", "q", "unused")] + [
        ("fill", ctypes.c_void_p), ("rise", ctypes.c_void_p)]


def _usable_cores() -> int:
    """The cores this process may run on (its affinity), else every core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def build_count() -> int:
    """How many times this process has compiled the library (0 when it came from the cache)."""
    return _builds


def _compiler() -> list[str] | None:
    """The C compiler command: ``$CC``, else Python's own, else ``cc``/``gcc``/``clang``."""
    for cand in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if cand:
            cmd = shlex.split(cand)
            path = shutil.which(cmd[0])
            if path:
                return [path, *cmd[1:]]
            if cand == os.environ.get("CC"):
                return None  # an explicit $CC that does not exist: no silent substitute
    return None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xnorflow" / "native"


def _build(cc: list[str], path: Path) -> str | None:
    """Compile bnn.c into ``path`` (via a temporary file renamed into place); ``None`` on
    success, else why not."""
    global _builds
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
        os.close(fd)
        r = subprocess.run([*cc, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                           timeout=300)
        if r.returncode:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            return f"the C compiler {cc[0]} failed on {SOURCE.name}: {' / '.join(tail)}"
        os.replace(tmp, path)  # atomic: another process sees the whole library or none
        _builds += 1
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"building with the C compiler {cc[0]} in {path.parent} failed: {e}"
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def _load():
    """The loaded library, or a string saying why there is none (each failure logged once)."""
    cc = _compiler()
    key = (tuple(cc or [os.environ.get("CC", "cc")]), str(_cache_root()))
    if key in _libs:
        return _libs[key]
    if cc is None:
        lib = f"no C compiler found (CC={os.environ.get('CC', '')!r}, cc, gcc, clang)"
    else:
        try:
            version = subprocess.run([*cc, "--version"], capture_output=True, text=True,
                                     timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            version = f"error {e}"
        digest = hashlib.sha256(b"\0".join([SOURCE.read_bytes(), " ".join(cc).encode(),
                                            version.encode(), " ".join(FLAGS).encode()]))
        path = _cache_root() / digest.hexdigest()[:20] / "libxnorflow_native.so"
        lib = None if path.is_file() else _build(cc, path)
        if lib is None:
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as e:
                lib = f"the native library {path} could not be loaded: {e}"
            else:
                lib.xf_isa_supported.argtypes = [ctypes.c_int]
                lib.xf_run.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_int64, ctypes.c_void_p, ctypes.c_int,
                                       ctypes.c_int]
    if isinstance(lib, str):
        _log.warning("xnorflow.native: %s; running the golden model (NumPy) instead", lib)
    _libs[key] = lib
    return lib


def compiler_error() -> str | None:
    """Why the native library is unavailable, or ``None`` when it loads."""
    lib = _load()
    return lib if isinstance(lib, str) else None


def available_isas() -> list[str]:
    """The instruction-set paths this machine can run, best first (empty without a compiler)."""
    lib = _load()
    if isinstance(lib, str):
        return []
    return [name for name, code in ISAS.items() if lib.xf_isa_supported(code)]


def _pixel_bytes(layer) -> int:
    """Bytes of one pixel of the map a layer reads (bnn.c: ``ib``): its channels' bits in whole
    bytes, or one byte per channel for the frame's pixels."""
    c = layer.in_shape[2]
    return c if layer.input_bits == 8 else -(-c // 8)


def _bounds(layer, n: int, kind: int, rows: int) -> np.ndarray:
    """The thresholds folded for bnn.c, ``rows`` of them (padding rows never fire), ``int32``:
    on 8-bit input ``d * T`` against ``d * acc`` (the rows of direction -1 negated); on bits
    ``n - T`` (direction +1) or ``T`` (-1, the row complemented) against
    ``c = popcount(w XOR a)``."""
    t, d = layer.thresholds, layer.directions.astype(np.int64)
    m = len(t)
    if kind in (_U8, _CONV_U8):
        b = np.full(rows, _I32.max, np.int64)
        b[:m] = d * t
    else:
        b = np.full(rows, -1, np.int64)
        b[:m] = np.where(d > 0, n - t, t)
    return b.astype(np.int32)


def _pack_dense(layer, isa: str, previous) -> dict:
    """A dense layer in bnn.c's layout for ``isa``. After a feature map its input is that map as
    bnn.c stores it: each pixel's channel bits in whole bytes, so the weight rows get zero bits
    where a pixel's last byte has unused ones."""
    n, m = layer.in_features, layer.out_features
    kind = _U8 if layer.input_bits == 8 else _BITS
    mp = -(-m // GROUP_ROWS[kind]) * GROUP_ROWS[kind]
    real = layer.weight_bits()
    if layer.thresholds is not None:  # direction -1: negate the weights (u8) / complement (bits)
        real[layer.directions < 0] ^= 1
    if previous is not None and hasattr(previous, "out_shape"):
        h, w, c = previous.out_shape
        spread = np.zeros((m, h * w, -(-c // 8) * 8), np.uint8)
        spread[:, :, :c] = real.reshape(m, h * w, c)
        real = spread.reshape(m, -1)
    width = real.shape[1]
    bits = np.zeros((mp, width), np.uint8)
    bits[:m] = real
    bound = None if layer.thresholds is None else _bounds(layer, n, kind, mp)
    if kind == _U8:  # per 16-row block and 4-input step one word: bit 4r + j
        k = -(-width // 4)
        padded = np.zeros((mp, 4 * k), np.uint8)
        padded[:, :width] = bits
        tiles = padded.reshape(mp // 16, 16, k, 4).transpose(0, 2, 1, 3).reshape(-1, 64)
        if isa == "avx512-vpopcntdq":  # 8x8-transposed words for the GF(2) affine expansion
            tiles = tiles.reshape(-1, 8, 8).transpose(0, 2, 1).reshape(-1, 64)
    else:  # per 8-row block and input word k, the 8 rows' words
        k = -(-width // 64)
        padded = np.zeros((mp, 64 * k), np.uint8)
        padded[:, :width] = bits
        tiles = padded.reshape(mp // 8, 8, k, 64).transpose(0, 2, 1, 3).reshape(-1, 64)
    words = np.packbits(tiles, axis=1, bitorder="little").view("<u8").reshape(-1)
    return {"kind": kind, "n": n, "m": m, "mp": mp, "k": k, "words": words, "bound": bound}


def _pack_conv(layer) -> dict:
    """A convolution in bnn.c's layout (the same for every isa): per window row ``ky`` the
    ``K * ib`` bytes of the map from the window's first pixel, as 4-byte steps of ±1 weight bytes
    (8-bit input, blocks of 16 channels) or as 64-bit words of weight bits (blocks of 8
    channels); zero past the row and in a pixel's unused bits."""
    k, m = layer.kernel, layer.out_channels
    c, ib = layer.in_shape[2], _pixel_bytes(layer)
    d = layer.directions.astype(np.int64)
    row = k * ib  # bytes of a window row in the map
    if layer.input_bits == 8:
        nw, mp = -(-row // 4), -(-m // 16) * 16
        signs = (2 * layer.weight_bits().astype(np.int64) - 1) * d[:, None]  # direction folded
        w = np.zeros((mp, k, nw * 4), np.int8)
        w[:m, :, :row] = signs.reshape(m, k, row)
        # blocks of 16 channels: per block, ky and step, channel r's 4 bytes at 4r
        w = w.reshape(mp // 16, 16, k, nw, 4).transpose(0, 2, 3, 1, 4)
        words = np.ascontiguousarray(w).reshape(-1).view(np.uint8).view("<u8")
        kind = _CONV_U8
    else:
        nw, mp = -(-row // 8), -(-m // 8) * 8
        bits = layer.weight_bits()
        bits[d < 0] ^= 1  # direction -1: the row complemented
        pixels = np.zeros((m, k, k, ib * 8), np.uint8)  # a pixel's unused bits stay 0
        pixels[..., :c] = bits.reshape(m, k, k, c)
        spread = np.zeros((mp, k, nw * 64), np.uint8)
        spread[:m, :, :row * 8] = pixels.reshape(m, k, row * 8)
        tiles = spread.reshape(mp // 8, 8, k * nw, 64).transpose(0, 2, 1, 3).reshape(-1, 64)
        words = np.packbits(tiles, axis=1, bitorder="little").view("<u8").reshape(-1)
        kind = _CONV_BITS
    return {"kind": kind, "n": layer.in_features, "m": m, "mp": mp, "k": k * nw, "nw": nw,
            "words": np.ascontiguousarray(words), "bound": _bounds(layer, layer.window, kind, mp)}


def _pack(model: Model, isa: str) -> list[dict]:
    """Every layer of ``model`` as the fields of bnn.c's ``xf_layer`` and the arrays they point
    to (``words``, ``bound``, ``fill``, ``rise``)."""
    packed = []
    layers = model.layers
    for i, layer in enumerate(layers):
        previous = layers[i - 1] if i else None
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if layer.kind == "dense":
            packed.append(_pack_dense(layer, isa, previous))
            continue
        if layer.kind == "conv2d":
            f = _pack_conv(layer)
            pad = layer.padding
        else:  # maxpool2d: OR where the convolution before rises, AND where it falls
            rise = np.zeros(-(-layer.in_shape[2] // 64) * 8, np.uint8)  # whole 8 bytes
            packed_rise = np.packbits(previous.directions > 0, bitorder="little")
            rise[:len(packed_rise)] = packed_rise
            f = {"kind": _POOL, "n": layer.in_features, "m": layer.out_features, "mp": 0, "k": 0,
                 "rise": rise}
            pad = 0
        h, w, c = layer.in_shape
        oh, ow, oc = layer.out_shape
        q = nxt.padding if nxt is not None and nxt.kind == "conv2d" else 0
        ob = -(-oc // 8)
        fill = None
        if q:  # the next convolution's pad bit in each of this map's channels
            fill = np.packbits(np.full(oc, nxt.pad_value, np.uint8), bitorder="little")
        f.update(ih=h + 2 * pad, iw=w + 2 * pad, ib=_pixel_bytes(layer), kern=layer.kernel,
                 stride=getattr(layer, "stride", layer.kernel), pad=pad,
                 pad_value=getattr(layer, "pad_value", 0), oh=oh, ow=ow, ob=ob, q=q, fill=fill)
        packed.append(f)
    return packed


def _check(rc: int) -> None:
    """Raise for a non-zero return code of ``xf_run``."""
    if rc == -1:
        raise MemoryError("native inference: out of memory for the frame buffers")
    if rc:
        raise RuntimeError(f"native inference failed with code {rc} (the isa is not supported "
                           "by this CPU)" if rc == -2 else f"native inference failed (code {rc})")


class NativeModel:
    """Bit-exact integer inference of ``model`` with the native kernels.

    ``threads``: how many threads share a batch (default: the cores this process may run on);
    an attribute, it may be changed between calls. A batch gives each thread at least 16 frames,
    so a single frame runs on one. ``isa``: one of :func:`available_isas` to force that path
    (``ValueError`` for any other); default the first, the best. Attributes: ``available``
    (``False`` when the library could not be built: then ``reason`` says why, ``isa`` is ``None``
    and the golden model computes the same results), ``isa``, ``threads``. One instance may be
    used from several Python threads at once.
    """

    def __init__(self, model: Model, threads: int | None = None, isa: str | None = None):
        model.validate()
        first = model.layers[0]
        width = first.window if first.kind == "conv2d" else first.in_features
        if 510 * width >= 2**31:
            raise ValueError(f"first layer too wide for 32-bit accumulators: "
                             f"{width} inputs (at most {(2**31 - 1) // 510})")
        self.model = model
        self._n0 = model.in_features
        self.threads = int(threads) if threads is not None else _usable_cores()
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self._golden = None
        lib = _load()
        self.available = not isinstance(lib, str)
        self.reason = None if self.available else lib
        if not self.available:
            if isa is not None:
                raise ValueError(f"isa {isa!r} requested but the native library is "
                                 f"unavailable: {lib}")
            self.isa = None
            self._golden = GoldenModel(model)
            return
        isas = available_isas()
        if isa is not None and isa not in isas:
            raise ValueError(f"isa {isa!r} cannot run here; this machine runs {', '.join(isas)}")
        self.isa = isa or isas[0]
        self._isa_code = ISAS[self.isa]
        self._lib = lib
        self._keep = []  # the packed arrays the C structs point into
        self._layers = (_Layer * len(model.layers))()
        for i, fields in enumerate(_pack(model, self.isa)):
            arrays = {name: fields.pop(name, None) for name in ("words", "bound", "fill", "rise")}
            self._keep += list(arrays.values())
            ptr = {name: None if a is None else a.ctypes.data for name, a in arrays.items()}
            self._layers[i] = _Layer(**fields, w=ptr["words"], bound=ptr["bound"],
                                     fill=ptr["fill"], rise=ptr["rise"])
        # Single frames (latency) go through buffers whose addresses are known: asking NumPy for
        # an address costs about as long as the C code of a small layer.
        m = model.classes
        self._one_in = np.zeros((1, model.in_features), np.uint8)
        self._one_out = np.zeros(m + 1, np.int64)
        self._one_views = self._one_out[:m].reshape(1, m), self._one_out[m:]
        self._one_args = (ctypes.addressof(self._layers), len(self._layers),
                          self._one_in.ctypes.data, 1, self._one_out.ctypes.data,
                          self._isa_code, 1)
        self._one_lock = threading.Lock()

    def check_frames(self, frames) -> np.ndarray:
        """Validate frames with the golden model's own checks: ``uint8 (B, N0)``, C-contiguous,
        or :class:`FrameError` naming the problem."""
        if (type(frames) is np.ndarray and frames.dtype == np.uint8 and frames.ndim == 2
                and frames.shape[1] == self._n0 and frames.flags.c_contiguous):
            return frames  # already what the checks give (every uint8 is a pixel value)
        return np.ascontiguousarray(GoldenModel.check_frames(self, frames))

    def run(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """Integer scores ``int64 (B, classes)`` and classes ``int64 (B,)`` (argmax, ties to the
        lowest index) of ``(B, N0)`` or ``(N0,)`` pixels in ``[0, 255]``."""
        if self._golden is not None:
            r = self._golden.run(frames)
            return r.scores, r.classes
        x = self.check_frames(frames)
        if len(x) == 1 and self._one_lock.acquire(blocking=False):
            try:
                self._one_in[...] = x
                _check(self._lib.xf_run(*self._one_args))
                return self._one_views[0].copy(), self._one_views[1].copy()
            finally:
                self._one_lock.release()
        b, m = x.shape[0], self.model.classes
        out = np.empty(b * (m + 1), np.int64)  # the scores, then the classes: one pointer
        if b:
            _check(self._lib.xf_run(self._layers, len(self._layers), x.ctypes.data, b,
                                    out.ctypes.data, self._isa_code, self.threads))
        return out[:b * m].reshape(b, m), out[b * m:]

    def predict(self, frames) -> np.ndarray:
        """Predicted classes, ``int64 (B,)``."""
        return self.run(frames)[1]


def benchmark(model: Model, batch: int = 256, threads: int | None = None, seconds: float = 1.0,
              isa: str | None = None, repeats: int = 3) -> dict:
    """Frames/s of :class:`NativeModel` on ``batch`` random frames (the work does not depend on
    the pixels): ``repeats`` runs of at least ``seconds`` each after a warm-up. Returns the isa,
    the threads, every repeat's frames/s, the best and the median, and µs per frame at the
    median."""
    nm = NativeModel(model, threads=threads, isa=isa)
    x = np.random.default_rng(0).integers(0, 256, (batch, model.in_features), dtype=np.uint8)
    for _ in range(3):
        nm.run(x)
    rates = []
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds or calls == 0:
            nm.run(x)
            calls += 1
        rates.append(calls * batch / elapsed)
    med = float(np.median(rates))
    return {"isa": nm.isa, "threads": nm.threads, "batch": batch, "frames_per_s": rates,
            "best": max(rates), "median": med, "us_per_frame": 1e6 / med}
