"""xnorflow: binarized neural networks from PyTorch to verified FPGA accelerators."""

__version__ = "0.1.0"
