"""Triton kernels. Imported only when impl="triton" is requested, so that
``import bigseq.kernels`` does not import triton (TRITON_INTERPRET is read at import)."""
