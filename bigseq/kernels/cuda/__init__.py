"""bigseq's CUDA ops (sources in csrc/): the op builder and thin Python wrappers.

Importing this package never needs CUDA; the extension is built or loaded on first use.
"""
