"""The compiler (layer 1): one op per layer kind, the passes, the performance and resource
models and auto-folding. It imports only the core (:mod:`xnorflow.model`); the gateware blocks
build what it plans (:func:`xnorflow.hw.blocks.block_for`).

The names most users need are here; each lives in its own module:
:mod:`~xnorflow.hw.compiler.folding`, :mod:`~xnorflow.hw.compiler.plan`,
:mod:`~xnorflow.hw.compiler.resources`, :mod:`~xnorflow.hw.compiler.rules`,
:mod:`~xnorflow.hw.compiler.op` and the ops in :mod:`xnorflow.hw.compiler.ops`.
"""

from xnorflow.hw.compiler.folding import (
    BRAM_MIN_WORDS,
    DEFAULT_LANES,
    Folding,
    FoldingError,
    LayerFolding,
)
from xnorflow.hw.compiler.op import Op, Timeline
from xnorflow.hw.compiler.ops.argmax import OUTPUT_FIFO_DEPTH, ArgMaxOp
from xnorflow.hw.compiler.ops.dense import LEVELS_PER_STAGE, DenseOp
from xnorflow.hw.compiler.ops.plumbing import ConverterOp, FifoOp
from xnorflow.hw.compiler.plan import (
    NetworkPlan,
    compile_plan,
    fold,
    insert_converters,
    lower,
    predict_ii,
    predict_latency,
    size_fifos,
)
from xnorflow.hw.compiler.resources import Resources, bram_blocks, bridge_resources

__all__ = [
    "BRAM_MIN_WORDS", "DEFAULT_LANES", "LEVELS_PER_STAGE", "OUTPUT_FIFO_DEPTH", "ArgMaxOp",
    "ConverterOp", "DenseOp", "FifoOp", "Folding", "FoldingError", "LayerFolding", "NetworkPlan",
    "Op", "Resources", "Timeline", "bram_blocks", "bridge_resources", "compile_plan", "fold",
    "insert_converters", "lower", "predict_ii", "predict_latency", "size_fifos",
]
