"""One op class per kind of stage (see :mod:`xnorflow.hw.compiler.op`).

Every module of this package is imported here, so an op registers itself for its layer kind by
being in this folder; :func:`op_for_layer` finds the op of a model layer.
"""

import importlib
import pkgutil

from xnorflow.hw.compiler.op import LAYER_OPS, Op

__all__ = ["op_for_layer"]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def op_for_layer(layer) -> type[Op]:
    """The op class of a model layer, by the layer's ``kind``; a clear error for a kind that has
    no hardware op yet."""
    kind = getattr(layer, "kind", None)
    if kind not in LAYER_OPS:
        raise ValueError(f"layer {getattr(layer, 'name', '?')!r}: kind {kind!r} has no hardware "
                         f"op (supported: {', '.join(sorted(LAYER_OPS))})")
    return LAYER_OPS[kind]
