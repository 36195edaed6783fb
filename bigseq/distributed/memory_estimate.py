"""Per-device memory of a training run, by ZeRO stage: the arithmetic behind `bigseq estimate-memory`.

Model states follow DeepSpeed's own accounting (`estimate_zero2/3_model_states_mem_needs`) for
mixed precision with Adam, per parameter:
  16-bit weights 2 B, 16-bit gradients 2 B, fp32 gradient partition 4 B,
  fp32 master weights + Adam moments 12 B (the "18" of DeepSpeed = 2 + 4 + 12);
  ZeRO-1 partitions the fp32 part, ZeRO-2 also the 16-bit gradients, ZeRO-3 also the weights
  (plus one gathered layer, 4 B per parameter of the largest layer). Stage 3 reduce-scatters
  straight into the fp32 partition, so it keeps no 16-bit gradient copy.
Optimizer offload moves the fp32 gradients and the Adam state to host memory.
fp32 runs keep no 16-bit copies and no master weights: 4 B weights, 4 B gradients, 8 B moments.
Activations assume a fused attention kernel (no seq x seq score matrix kept). Sequence parallelism
(Ulysses) of degree P gives each device T/P tokens of every layer (attention's all-to-all trades them
for the whole sequence of H/P heads: the same size), so activations divide by P; ZeRO still shards
the model states over all devices.
Tensor parallelism (AutoTP) of degree T splits the attention and feed-forward projections (the
parameters its partition rules name) T ways and leaves embeddings and norms whole; ZeRO shards over
the world / T data-parallel ranks. Inside a layer the heads' and the feed-forward's activations
divide by T; the residual stream and the logits stay whole on every rank.
--mlp-chunks K keeps no feed-forward intermediates between forward and backward (each slice is
recomputed): one slice of one layer's intermediates exists at a time instead.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from bigseq.errors import BigseqError
from bigseq.models.family import ModelDims

GIB = 2**30


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelShape(ModelDims):
    """The family's sizes plus what counting the built model gives."""

    num_params: int
    largest_layer_params: int
    tensor_parallel_params: int = 0
    """Parameters that --tensor-parallel-size splits (bigseq's AutoTP partition rules match them)."""


@dataclasses.dataclass(frozen=True)
class DeviceMemory:
    """Bytes per device; host_bytes is what optimizer offload puts in CPU memory (per device)."""
    zero_stage: int
    parameters: int
    gradients: int
    optimizer_states: int
    activations: int
    activations_checkpointed: int
    host_bytes: int

    @property
    def model_states(self) -> int:
        return self.parameters + self.gradients + self.optimizer_states

    def total(self, checkpointing: bool) -> int:
        return self.model_states + (self.activations_checkpointed if checkpointing else self.activations)


def model_shape(arch: str, vocab_size: int) -> ModelShape:
    """Build the named architecture on the meta device (no memory) and read its sizes."""
    import torch

    import bigseq.models  # noqa: F401  (registers the families)
    from bigseq import registry
    from bigseq.models.family import get_family
    model_name, make_config = registry.ARCH_REGISTRY.get(arch)  # unknown names: BigseqError with the list
    family = get_family(model_name)
    cfg = make_config()
    if family.dims is None or not hasattr(cfg, "vocab_size"):
        raise BigseqError(f"--arch {arch}: the {model_name} family does not describe its sizes (ModelFamily.dims); "
                          f"estimate-memory covers families that do, e.g. transformer_lm architectures")
    cfg = dataclasses.replace(cfg, vocab_size=vocab_size)
    with torch.device("meta"):
        model = family.build(cfg, SimpleNamespace(vocab_size=vocab_size, pad_idx=1), 1)
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    from bigseq.distributed.tensor_parallel import is_split
    return ModelShape(**dataclasses.asdict(family.dims(cfg)), num_params=sum(p.numel() for p in model.parameters()),
                      largest_layer_params=largest,
                      tensor_parallel_params=sum(p.numel() for n, p in model.named_parameters() if is_split(n)))


def activation_bytes(shape: ModelShape, micro_batch: int, seq_len: int, bytes_per_value: int,
                     checkpointing: bool, tensor_parallel: int = 1, mlp_chunks: int = 1) -> int:
    """Activations kept for the backward pass of one micro-batch.

    Per layer: norm inputs/outputs and residuals (4 x dim), q and attention output (2 x heads x head
    dim), k and v (2 x kv heads x head dim), and the FFN's hidden values (3 x ffn for a gated FFN:
    gate, up, their product; 2 otherwise); tensor parallelism divides all but the first by T.
    With mlp_chunks K > 1 the FFN's hidden values are recomputed, and one K-th of one layer's
    exists at a time (in its backward).
    Checkpointing every layer keeps only each layer's input, plus one layer recomputed at a time.
    fp32 logits for the loss come on top either way.
    """
    tokens = micro_batch * seq_len
    q_dim, kv_dim = shape.heads * shape.head_width, shape.kv_heads * shape.head_width
    ffn = (3 if shape.gated_ffn else 2) * shape.ffn_dim * tokens * bytes_per_value // tensor_parallel
    attention = (2 * q_dim + 2 * kv_dim) * tokens * bytes_per_value // tensor_parallel
    per_layer = 4 * shape.dim * tokens * bytes_per_value + attention + (ffn if mlp_chunks == 1 else 0)
    transient = 0 if mlp_chunks == 1 else ffn // mlp_chunks  # one slice recomputed at a time
    logits = tokens * shape.vocab_size * 4
    if checkpointing:
        return shape.layers * tokens * shape.dim * bytes_per_value + per_layer + transient + logits
    return shape.layers * per_layer + transient + logits


def check_sequence_parallel(shape: ModelShape, sp: int, world_size: int, seq_len: int) -> None:
    """What --sequence-parallel-size needs, as bigseq train checks it: one line each."""
    if sp < 1:
        raise BigseqError(f"--sequence-parallel-size must be >= 1, got {sp}")
    for name, value in (("--world-size", world_size), ("--tokens-per-sample", seq_len), ("heads", shape.heads),
                        ("key/value heads", shape.kv_heads)):
        if value % sp:
            raise BigseqError(f"{name} {value} is not divisible by --sequence-parallel-size {sp}")


def check_tensor_parallel(shape: ModelShape, tp: int, world_size: int, sp: int) -> None:
    """What --tensor-parallel-size needs, as bigseq train checks it: one line each."""
    if tp < 1:
        raise BigseqError(f"--tensor-parallel-size must be >= 1, got {tp}")
    if tp > 1 and sp > 1:
        raise BigseqError("--tensor-parallel-size and --sequence-parallel-size cannot be combined; pick one")
    if world_size % tp:
        raise BigseqError(f"--tensor-parallel-size {tp} does not divide --world-size {world_size}")
    for what, value in (("attention heads", shape.heads), ("KV heads", shape.kv_heads), ("FFN width", shape.ffn_dim)):
        if value % tp:
            raise BigseqError(f"--tensor-parallel-size {tp} must divide the {what} ({value}): "
                              f"each rank holds an equal slice")


def estimate(shape: ModelShape, *, zero_stage: int, world_size: int, micro_batch: int, seq_len: int,
             precision: str = "bf16", offload_optimizer: bool = False, sequence_parallel: int = 1,
             tensor_parallel: int = 1, mlp_chunks: int = 1) -> DeviceMemory:
    if zero_stage not in (0, 1, 2, 3):
        raise BigseqError(f"--zero-stage {zero_stage} does not exist; use 0, 1, 2 or 3")
    if mlp_chunks < 1:
        raise BigseqError(f"--mlp-chunks must be >= 1 (1: no tiling), got {mlp_chunks}")
    check_sequence_parallel(shape, sequence_parallel, world_size, seq_len)
    check_tensor_parallel(shape, tensor_parallel, world_size, sequence_parallel)
    if world_size < 1 or micro_batch < 1 or seq_len < 1:
        raise BigseqError("--world-size, --micro-batch and --tokens-per-sample must be positive")
    if precision not in ("bf16", "fp16", "fp32"):
        raise BigseqError(f"--precision {precision} is not one of bf16, fp16, fp32")
    # tensor parallelism keeps 1/T of the split parameters on a rank; ZeRO shards over the data-parallel ranks
    psi = shape.num_params - shape.tensor_parallel_params + shape.tensor_parallel_params // tensor_parallel
    n, mixed = world_size // tensor_parallel, precision != "fp32"
    offload_optimizer = offload_optimizer and zero_stage > 0  # DeepSpeed offloads only under ZeRO

    def per_device(bytes_per_param: int, partitioned: bool) -> int:
        return bytes_per_param * psi // n if partitioned else bytes_per_param * psi

    # mixed: 16-bit weights/grads + fp32 grads, master weights and moments; fp32: one copy of each, moments
    weights = per_device(2 if mixed else 4, zero_stage == 3)
    if zero_stage == 3:
        weights += 4 * shape.largest_layer_params  # one layer gathered at a time, as DeepSpeed counts it
    grads16 = 0 if not mixed or zero_stage == 3 or (offload_optimizer and zero_stage == 2) \
        else per_device(2, zero_stage == 2)
    grads32 = per_device(4, zero_stage >= (1 if mixed else 2))
    optimizer = per_device(12 if mixed else 8, zero_stage >= 1)
    if offload_optimizer:  # the fp32 gradient partition and Adam's state live in host memory
        host, grads32, optimizer = grads32 + optimizer, 0, 0
    else:
        host = 0
    value_b = 4 if precision == "fp32" else 2
    local_len = seq_len // sequence_parallel  # this device's slice of every sequence

    def activations(checkpointing: bool) -> int:
        return activation_bytes(shape, micro_batch, local_len, value_b, checkpointing=checkpointing,
                                tensor_parallel=tensor_parallel, mlp_chunks=mlp_chunks)
    return DeviceMemory(
        zero_stage=zero_stage, parameters=weights, gradients=grads16 + grads32, optimizer_states=optimizer,
        activations=activations(False), activations_checkpointed=activations(True), host_bytes=host)


def longest_sequence(shape: ModelShape, device_bytes: int, checkpointing: bool, **run) -> int:
    """The longest --tokens-per-sample (a multiple of the sequence-parallel degree) whose total fits
    device_bytes; 0 when the model states alone do not fit. Activations grow linearly with the
    tokens (fused attention keeps no T x T scores), so two evaluations give the slope."""
    step = run.get("sequence_parallel", 1)
    run = {**run, "micro_batch": run.get("micro_batch", 1)}
    base = estimate(shape, seq_len=step, **run).total(checkpointing)
    slope = estimate(shape, seq_len=2 * step, **run).total(checkpointing) - base  # bytes per `step` tokens
    if base > device_bytes:
        return 0
    tokens = step * (1 + (device_bytes - base) // slope)
    while tokens > step and estimate(shape, seq_len=tokens, **run).total(checkpointing) > device_bytes:
        tokens -= step  # integer division rounding: at most a step or two
    return tokens
