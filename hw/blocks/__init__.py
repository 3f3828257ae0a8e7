"""Gateware blocks (layer 2): the matrix-vector-threshold unit, the reduction trees, stream
plumbing, the argmax and the UART, each a :class:`~amaranth.lib.wiring.Component`.

A block that implements an op of the compiler says so with
:func:`~xnorflow.hw.blocks.registry.implements` and builds itself from the op (``from_op``); it
takes its structural rules (latencies, memory placement) from :mod:`xnorflow.hw.compiler.rules`,
as the op does. Every module of this package is imported here, so a new block registers itself by
being in this folder, and :func:`block_for` finds it.
"""

import importlib
import pkgutil

from xnorflow.hw.blocks.registry import BLOCKS, block_for, implements

__all__ = ["BLOCKS", "block_for", "implements"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
