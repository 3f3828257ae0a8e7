"""Random networks x foldings x stall patterns through the generated Verilog: a sweep command.

``python -m xnorflow.sim.sweep`` builds, for each of ``--models`` random models of each kind
that ``--kind`` names, each of ``--foldings`` foldings (PE = SIMD = 1, fully parallel, and
random divisor pairs, with converters wherever PE differs from the next SIMD, random weight
storage and sometimes a FIFO), one Verilator build, and runs :mod:`xnorflow.sim.tb_network` on
it under every pause pattern of :data:`PAUSES` on both streams. The kinds of model:

* ``dense``: random topologies of 2 to 4 dense layers with sizes that are rarely powers of two,
  an 8-bit first layer, random weights, thresholds of both directions near the accumulators
  that the frames reach and some constant channels (:func:`~xnorflow.sim.fixtures.random_model`);
* ``conv``: small convolutional networks (:func:`~xnorflow.sim.fixtures.random_conv_net`): an 8-bit
  first convolution on 1 or 3 channels, up to three convolutions of kernel 1, 2, 3 or 5, stride 1 or
  2, padding 0 or ``K // 2``, pad pixels and pad bits 0 and 1, odd map sides, max-pooling of both
  directions, dense layers behind, thresholds at accumulators that the frames reach; their foldings
  choose PE and SIMD among the divisors of the channels, for a pooling PE = SIMD, and sometimes the
  places of a convolution's input buffer and line buffer;
* ``all`` (the default): both, ``--models`` of each.

Every run checks the class and every score against the golden model, every frame out once and in
order, and the measured II and latency equal to the prediction. It prints one line per run (``ok``
or ``FAIL``, the model (its topology, or its spec and seed), the folding as ``PExSIMD`` per layer
with ``L`` for weights in LUTs, ``+fD`` for a FIFO of depth D, ``/b`` or ``/l`` for an input buffer
in block RAM or logic and ``~b`` or ``~l`` for a line buffer there, the pauses, frames out,
mismatches, measured/predicted II and latency) and exits with 1 when any run failed. Every choice
comes from ``--seed``, so a failing line can be rerun; ``--build-dir`` keeps the builds and logs.

The helpers (:func:`random_model`, :func:`random_conv_net`, :func:`random_frames`,
:func:`random_folding`) are also used by ``tests/test_sim_network.py``, whose fixed cases are the
bounded subset that CI runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xnorflow.sim.fixtures import (
    random_conv_net,
    random_folding,
    random_frames,
    random_model,
)

__all__ = ["KINDS", "PAUSES", "main", "run_case"]

#: Pause patterns, applied to the source and the sink (with different seeds or phases).
PAUSES = {
    "none": (None, None),
    "fixed": ({"kind": "fixed", "pattern": [0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0]},
              {"kind": "fixed", "pattern": [0, 1, 1, 0, 0, 0, 1]}),
    "random": ({"kind": "random", "p": 0.3, "seed": 1}, {"kind": "random", "p": 0.3, "seed": 2}),
}


def run_case(model, folding, frames, build_root, pauses=tuple(PAUSES), *, timing_frames=8,
             log=print) -> list[dict]:
    """Generate and build ``model`` with ``folding`` once under ``build_root``, run the testbench
    under each pause pattern named in ``pauses``; return the testbench summaries (with
    ``pauses``, ``passed`` and the run's ``log_file`` added)."""
    from xnorflow.hw.build.verilog import generate
    from xnorflow.hw.tops.network import TOP_NAME
    from xnorflow.sim.runner import build, run_tests

    build_root = Path(build_root)
    manifest = generate(model, build_root, folding)
    sim_build = build([build_root / f"{TOP_NAME}.v"], toplevel=TOP_NAME, build_dir=build_root)
    model_path = model.save(build_root / "model.npz")
    np.save(build_root / "frames.npy", frames)
    summaries = []
    for name in pauses:
        source_pause, sink_pause = PAUSES[name]
        summary_path = build_root / f"summary-{name}.json"
        summary_path.unlink(missing_ok=True)
        params = {"model": str(model_path), "manifest": str(build_root / "manifest.json"),
                  "frames": str(build_root / "frames.npy"), "source_pause": source_pause,
                  "sink_pause": sink_pause, "timing_frames": timing_frames,
                  "summary": str(summary_path)}
        result = run_tests(sim_build, "xnorflow.sim.tb_network", params=params,
                           run_name=f"tb_network-{name}", check=False)
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {
            "passed": False, "failures": list(result.failures) or ["no summary written"]}
        summary["pauses"] = name
        summary["passed"] = bool(summary["passed"]) and result.ok
        summary["log_file"] = str(result.log_file)
        summary["manifest_ii"] = manifest["performance"]["ii_cycles"]
        summaries.append(summary)
        log(_line(model, folding, summary))
    return summaries


def _name(model):
    spec = model.provenance.get("spec")
    if spec is None:
        return "-".join(map(str, model.topology))
    return f"{spec}#{model.provenance.get('seed')}"


def _line(model, folding, s):
    fold = " ".join(f"{f.pe}x{f.simd}{'L' if f.storage == 'lut' else ''}"
                    + (f"+f{f.fifo_depth}" if f.fifo_depth is not None else "")
                    + (f"/{f.buffer[0]}" if f.buffer is not None else "")
                    + (f"~{f.line_buffer[0]}" if f.line_buffer is not None else "")
                    for f in folding.layers)
    if "frames" not in s:
        return f"FAIL {_name(model):<18} {fold:<28} {s['pauses']:<7} " \
               f"{s['failures'][0].splitlines()[0]}"
    return (f"{'ok  ' if s['passed'] else 'FAIL'} {_name(model):<18} "
            f"{fold:<28} {s['pauses']:<7} frames {s['received']}/{s['frames']} mismatches "
            f"{s['mismatches']} II {s['ii_cycles']}/{s['predicted_ii']} latency "
            f"{s['latency_cycles']}/{s['predicted_latency']}"
            + ("" if s["passed"] else f"  {s['failures'][0][:200]}"))


#: Layer sizes of the random topologies: composite (so that foldings have choices), mostly not
#: powers of two.
_SIZES = (6, 9, 10, 12, 14, 15, 18, 20, 21, 24, 28, 30, 36, 40, 42, 45)
_CLASSES = (2, 3, 4, 5, 6, 7, 9, 10)


def _random_topology(rng):
    hidden = [int(rng.choice(_SIZES)) for _ in range(int(rng.integers(1, 4)))]
    return [int(rng.choice(_SIZES)), *hidden, int(rng.choice(_CLASSES))]


#: The kinds of random model (``--kind``).
KINDS = ("dense", "conv", "all")


def _models(kind, count, frames, seed):
    """``(model, frames)`` pairs: ``count`` random models of ``kind`` (``dense`` or ``conv``),
    each with its frames, and the generator the foldings then draw from. The dense models come
    from ``seed`` alone, the convolutional ones from ``(seed, 1)``."""
    rng = np.random.default_rng(seed if kind == "dense" else (seed, 1))
    for _ in range(count):
        if kind == "dense":
            topology = _random_topology(rng)
            x = random_frames(rng, frames, topology[0])
            yield random_model(topology, int(rng.integers(1 << 30)), x), x, rng
        else:
            model, x = random_conv_net(rng, frames)
            yield model, x, rng


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m xnorflow.sim.sweep", description=__doc__.split(
        "\n\n")[0])
    p.add_argument("--kind", choices=KINDS, default="all",
                   help="random dense models, convolutional ones, or both (default all)")
    p.add_argument("--models", type=int, default=4,
                   help="random models of each kind (default 4)")
    p.add_argument("--foldings", type=int, default=3,
                   help="foldings per model: pe1, parallel, then random ones (default 3)")
    p.add_argument("--frames", type=int, default=24, help="frames per run (default 24)")
    p.add_argument("--pauses", default=",".join(PAUSES),
                   help=f"pause patterns, comma-separated (default {','.join(PAUSES)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--build-dir", default=None, help="keep the builds here (default: temporary)")
    args = p.parse_args(argv)
    pauses = [name for name in args.pauses.split(",") if name]
    unknown = sorted(set(pauses) - set(PAUSES))
    if unknown:
        p.error(f"unknown pause pattern {unknown[0]!r} (choose from {', '.join(PAUSES)})")
    kinds = ["pe1", "parallel"] + ["random"] * max(0, args.foldings - 2)
    kinds = kinds[:args.foldings]
    started = time.perf_counter()
    failed = runs = 0
    with tempfile.TemporaryDirectory(prefix="xnorflow-sweep-") as tmp:
        root = Path(args.build_dir or tmp)
        for kind in (["dense", "conv"] if args.kind == "all" else [args.kind]):
            prefix = "m" if kind == "dense" else "c"
            for m, (model, frames, rng) in enumerate(_models(kind, args.models, args.frames,
                                                             args.seed)):
                for f, fold_kind in enumerate(kinds):
                    fold = random_folding(model if kind == "conv" else model.topology, rng,
                                          fold_kind)
                    for s in run_case(model, fold, frames, root / f"{prefix}{m}-f{f}", pauses):
                        runs += 1
                        failed += not s["passed"]
    print(f"{runs - failed}/{runs} runs passed in {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
