"""Pipeline arithmetic reported at start-up: the 1F1B bubble and each stage's static memory."""

from __future__ import annotations


def bubble_fraction(num_stages: int, micro_batches: int) -> float:
    """Idle share of DeepSpeed's 1F1B TrainSchedule: (P - 1) / (M + P - 1) for P stages, M micro-batches."""
    return (num_stages - 1) / (micro_batches + num_stages - 1)


def stage_memory_bytes(params: int, precision: str, optimizer_states: int, zero_shards: int) -> int:
    """Estimate of one stage's static memory: weights + gradients + optimizer states (fp32 states, plus an
    fp32 master copy with bf16/fp16), the optimizer part split over ``zero_shards`` ranks by ZeRO-1."""
    weight = 4 if precision == "fp32" else 2
    optimizer = 4 * optimizer_states + (0 if precision == "fp32" else 4)
    return int(params * (2 * weight + optimizer / zero_shards))


def optimizer_states_per_param(name: str, optimizer_cfg) -> int:
    """fp32 values the optimizer keeps per parameter: Adam-style 2 (exp_avg, exp_avg_sq), adafactor ~1
    (factored), SGD 1 with momentum, else 0."""
    if name == "sgd":
        return 1 if getattr(optimizer_cfg, "momentum", 0.0) else 0
    return 1 if name == "adafactor" else 2
