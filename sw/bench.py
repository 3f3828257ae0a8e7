"""CPU side of the accelerator-versus-CPU benchmark.

Every CPU figure is measured in the same run, on the same frames: for each implementation in
:func:`xnorflow.cpu.implementations`, batch size and thread count, frames are pushed through
repeatedly for at least ``min_seconds`` and the rate is frames per wall-clock second. Results are
checked against the golden model before they are timed, so a fast wrong implementation cannot
win.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .cpu import implementations
from .golden import GoldenModel
from .model import Model

__all__ = ["CpuRow", "cpu_benchmark"]


@dataclass
class CpuRow:
    implementation: str
    threads: int
    batch: int
    frames_per_s: float
    latency_ms: float  #: wall time of one batch

    def to_json(self) -> dict:
        return asdict(self)


def _time(fn, frames: np.ndarray, batch: int, min_seconds: float) -> tuple[float, float]:
    chunks = [frames[s:s + batch] for s in range(0, len(frames) - batch + 1, batch)]
    fn(chunks[0])  # warm up
    done = 0
    calls = 0
    t0 = time.perf_counter()
    while True:
        for c in chunks:
            fn(c)
            done += len(c)
            calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return done / elapsed, 1000 * elapsed / calls


def cpu_benchmark(model: Model, frames: np.ndarray, batches=(1, 256), threads=None,
                  min_seconds: float = 1.0, progress=None) -> list[CpuRow]:
    """Frames/s of every CPU implementation × thread count × batch size."""
    all_cores = os.cpu_count() or 1
    threads = threads or sorted({1, all_cores})
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    want = GoldenModel(model).predict(frames)
    rows = []
    saved = torch.get_num_threads()
    try:
        for name, impl in implementations(model).items():
            got = impl.predict(frames)
            if not np.array_equal(got, want):
                raise AssertionError(f"{name} disagrees with the golden model on "
                                     f"{int((got != want).sum())} frames")
            for t in threads:
                torch.set_num_threads(t)
                for b in batches:
                    if b > len(frames):
                        continue
                    fps, lat = _time(impl.predict, frames, b, min_seconds)
                    row = CpuRow(name, t, b, round(fps, 1), round(lat, 4))
                    rows.append(row)
                    if progress:
                        progress(row)
    finally:
        torch.set_num_threads(saved)
    return rows
