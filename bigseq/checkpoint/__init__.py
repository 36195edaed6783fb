"""Checkpoint save/load/resume (DeepSpeed layout + bigseq client state)."""

import bigseq.distributed  # noqa: F401  (names DeepSpeed's accelerator before deepspeed is imported)
