"""Checkpoint save/load/resume (DeepSpeed layout + bigseq client state) and conversions."""
