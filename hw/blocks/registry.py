"""Which block implements which op: filled by :func:`implements`, read by :func:`block_for`."""

from amaranth.lib import wiring

__all__ = ["BLOCKS", "block_for", "implements"]

#: The block class of each op class.
BLOCKS: dict[type, type] = {}


def implements(op_class):
    """Class decorator: the decorated :class:`~amaranth.lib.wiring.Component` implements
    ``op_class`` (an op of :mod:`xnorflow.hw.compiler.ops`) and builds itself from one with its
    class method ``from_op(op)``."""

    def register(block_class):
        if op_class in BLOCKS and BLOCKS[op_class] is not block_class:
            raise TypeError(f"{op_class.__name__} has two blocks: {BLOCKS[op_class].__name__} "
                            f"and {block_class.__name__}")
        if not callable(getattr(block_class, "from_op", None)):
            raise TypeError(f"{block_class.__name__} implements {op_class.__name__} but has no "
                            "from_op(op)")
        BLOCKS[op_class] = block_class
        return block_class

    return register


def block_for(op) -> wiring.Component:
    """The Component that implements ``op`` (the build pass calls this for every op)."""
    block_class = BLOCKS.get(type(op))
    if block_class is None:
        raise TypeError(f"no gateware block implements {type(op).__name__} (op {op.label!r})")
    return block_class.from_op(op)
