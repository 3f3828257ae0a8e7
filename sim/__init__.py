"""xnorflow.sim: cocotb testbenches, stream helpers and simulator runners."""
