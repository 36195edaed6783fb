"""RNG states of every rank, so a resumed run draws the same dropout masks."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.distributed as dist


def get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def gather_rng_states(world_size: int) -> list[dict]:
    mine = get_rng_state()
    if world_size == 1:
        return [mine]
    out: list = [None] * world_size
    dist.all_gather_object(out, mine)
    return out


def reseed(seed: int, rank: int, num_updates: int) -> None:
    """Fresh, reproducible streams for a rank whose saved state does not apply (resumed on another world size)."""
    mixed = (seed * 1_000_003 + rank * 10_007 + num_updates) % (2**32)
    random.seed(mixed)
    np.random.seed(mixed)
    torch.manual_seed(mixed)
