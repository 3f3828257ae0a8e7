"""Trained models shipped with xnorflow (MNIST, FINN topologies TFC, SFC and LFC).

Each ``<name>.npz`` is an exported model file (see :mod:`xnorflow.model`); its provenance records
the dataset, seed, training settings and the accuracy measured on the MNIST test set.
"""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def shipped() -> dict[str, Path]:
    """Names of the shipped models and their files."""
    return {p.stem: p for p in sorted(MODELS_DIR.glob("*.npz"))}
