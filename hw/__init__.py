"""xnorflow.hw: Amaranth gateware for binarized-network accelerators."""
