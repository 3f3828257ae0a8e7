"""Trained models shipped with xnorflow (MNIST: FINN's topologies TFC, SFC and LFC, and the
convolutional networks as they are trained).

Each ``<name>.npz`` is an exported model file (see :mod:`xnorflow.model`); its provenance records
the dataset, seed, training settings and the accuracy measured on the test set. Every verb of the
command line takes a shipped model's name wherever it takes a model file (:func:`resolve`).
"""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def shipped() -> dict[str, Path]:
    """Names of the shipped models and their files."""
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.npz"))}


def resolve(model: str | Path) -> Path:
    """A model file's path: ``model`` itself when it is a file, else the shipped model of that
    name (``tfc``, ``sfc``, ...). ``FileNotFoundError`` naming both when it is neither."""
    path = Path(model)
    if path.is_file():
        return path
    found = shipped().get(str(model).strip().lower())
    if found is not None:
        return found
    raise FileNotFoundError(f"{model}: no such model file, and no shipped model of that name "
                            f"(shipped: {', '.join(shipped())})")
