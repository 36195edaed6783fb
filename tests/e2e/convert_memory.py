"""Peak RAM of `bigseq convert from-hf` / `to-hf` on a synthetic bf16 Llama, each run in a fresh process.

Shared by tests/e2e/test_convert_memory.py and benchmarks/hf_convert_memory.py. The child imports
everything a conversion imports first, then restarts the kernel's high-water mark (VmHWM, by writing
5 to /proc/self/clear_refs), so the peak it reports is the conversion's own on top of the imports.
Conversion writes every tensor, so the pages are really touched: a bare safetensors load_file or
from_pretrained would leave untouched mmap pages out of RSS and look cheaper than it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

MIB = 2**20

CHILD = r"""
import json, os, sys, time
direction, mode, src, out, shard = sys.argv[1:6]

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) * 1024

import safetensors.torch, tokenizers, torch, transformers  # noqa: what a conversion imports, in the baseline
from transformers import LlamaConfig  # noqa
from bigseq.config.train_config import load_components
from bigseq.checkpoint import convert
load_components(None)

def run():
    if mode == "after":
        return (convert.from_hf if direction == "from-hf" else convert.to_hf)(src, out, max_shard_size=shard)
    if direction == "from-hf":
        return convert.from_hf(src, out)
    # the base commit's to-hf reads only training checkpoints: its body, on the consolidated folder's model
    from bigseq.models.family import get_family
    model = convert.build_consolidated_model(src)
    adapter = get_family("transformer_lm").hf_adapter
    hf_config = adapter.hf_config_from_cfg(model.cfg)
    state = convert._without_aliases(adapter.to_hf_state_dict(model, model.cfg))
    with convert._Staging(out) as tmp:
        convert._save_tensors({k: v.float() for k, v in state.items()}, os.path.join(tmp, convert.WEIGHTS_FILE))
        hf_config.save_pretrained(tmp)

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM restarts from the current RSS
except OSError:  # kernels without it: the peak then includes the imports' own (an overestimate)
    pass
baseline, start = status("VmRSS"), time.perf_counter()
run()
print(json.dumps({"baseline": baseline, "peak": status("VmHWM"), "seconds": time.perf_counter() - start}))
"""


def llama_shapes(layers: int, dim: int, ffn: int, vocab: int) -> dict[str, tuple[int, ...]]:
    """HF LlamaForCausalLM tensor names -> shapes (64-wide heads, no grouped KV, untied head)."""
    shapes = {"model.embed_tokens.weight": (vocab, dim)}
    for i in range(layers):
        h = f"model.layers.{i}."
        shapes.update({h + "input_layernorm.weight": (dim,), h + "post_attention_layernorm.weight": (dim,)})
        shapes.update({f"{h}self_attn.{p}_proj.weight": (dim, dim) for p in "qkvo"})
        shapes.update({h + "mlp.gate_proj.weight": (ffn, dim), h + "mlp.up_proj.weight": (ffn, dim),
                       h + "mlp.down_proj.weight": (dim, ffn)})
    shapes.update({"model.norm.weight": (dim,), "lm_head.weight": (vocab, dim)})
    return shapes


def write_synthetic_llama(folder: str, *, layers: int, dim: int = 1024, ffn: int = 2816, vocab: int = 32000,
                          shard_mib: int = 128) -> dict:
    """A sharded bf16 Llama checkpoint of random tensors (no model is built); -> total and largest bytes."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig
    os.makedirs(folder, exist_ok=True)
    LlamaConfig(vocab_size=vocab, hidden_size=dim, intermediate_size=ffn, num_hidden_layers=layers,
                num_attention_heads=dim // 64, num_key_value_heads=dim // 64, tie_word_embeddings=False,
                dtype="bfloat16").save_pretrained(folder)
    shapes = llama_shapes(layers, dim, ffn, vocab)
    gen = torch.Generator().manual_seed(0)
    shards: list[dict[str, torch.Tensor]] = [{}]
    for name, shape in shapes.items():
        if sum(t.nbytes for t in shards[-1].values()) >= shard_mib * MIB:
            shards.append({})
        shards[-1][name] = (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)
    weight_map = {}
    for i, tensors in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, os.path.join(folder, file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, file))
    sizes = [2 * torch.Size(s).numel() for s in shapes.values()]
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}, f)
    return {"total_bytes": sum(sizes), "largest_bytes": max(sizes), "shards": len(shards)}


def measure(direction: str, src: str, out: str, *, code_root: str, mode: str = "after",
            max_shard_size: str = "200MiB") -> dict:
    """Run one conversion of the bigseq under ``code_root`` in a fresh process; -> its peak RAM above the
    import baseline (bytes) and the conversion's wall time. mode 'before': the base commit's API."""
    env = {**os.environ, "PYTHONPATH": code_root, "DS_ACCELERATOR": "cpu"}
    paths = [os.path.abspath(src), os.path.abspath(out)]  # the child runs in code_root
    proc = subprocess.run([sys.executable, "-c", CHILD, direction, mode, *paths, max_shard_size], env=env,
                          cwd=code_root, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise AssertionError(f"{direction} ({mode}) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**row, "above_baseline": row["peak"] - row["baseline"]}
