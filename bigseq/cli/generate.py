"""`bigseq generate`: continue prompts with a language model checkpoint (KV-cached decoding).

Prompts come from --prompt or, without it, one per line of standard input.
Greedy by default; --sampling with --temperature, --sampling-topk, --sampling-topp.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field

from bigseq.checkpoint.inference import load_for_inference
from bigseq.config import FlagParser, add_dataclass_args
from bigseq.errors import BigseqError
from bigseq.generation import GenerationConfig, SequenceGenerator


@dataclass(kw_only=True)
class GenerateCLIConfig:
    path: str = field(default="", metadata={"positional": True})
    """Checkpoint: a --save-dir (its latest) or one of its checkpoint_* folders."""
    prompt: str | None = None
    """Text to continue (default: read prompts from standard input, one per line)."""
    data: str | None = None
    """Data directory holding the tokenizer (default: the one the model was trained on)."""
    seed: int = 1
    """Random seed for sampling."""
    user_dir: str | None = None
    """Folder of your own registered components (as in training)."""


def parse(argv):
    parser = FlagParser(prog="bigseq generate")
    add_dataclass_args(parser, GenerateCLIConfig, "options")
    add_dataclass_args(parser, GenerationConfig, "generation")
    args = vars(parser.parse_args(argv))
    gen_names = {f.name for f in dataclasses.fields(GenerationConfig)}
    cli = GenerateCLIConfig(**{k: v for k, v in args.items() if k not in gen_names})
    gen = GenerationConfig(**{k: v for k, v in args.items() if k in gen_names})
    if not cli.path:
        parser.error("a checkpoint path is required")
    return cli, gen


def main(argv=None):
    cli, gen_cfg = parse(argv)
    cfg, task, model, _ = load_for_inference(cli.path, data=cli.data, user_dir=cli.user_dir)
    tokenizer = getattr(task, "tokenizer", None)
    if tokenizer is None:
        raise BigseqError(f"the data dir {cfg.task.data} has no tokenizer.json, so text cannot be encoded; "
                          f"pass --data with a directory written by `bigseq preprocess`")
    texts = [cli.prompt] if cli.prompt is not None else [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise BigseqError("no prompt: pass --prompt TEXT or give prompts on standard input, one per line")
    generator = SequenceGenerator(model, gen_cfg, eos_idx=task.eos_idx, pad_idx=task.pad_idx)
    outputs = generator.generate([tokenizer.encode(t) for t in texts], seed=cli.seed)
    results = []
    for text, ids in zip(texts, outputs):
        continuation = tokenizer.decode([i for i in ids if i != task.eos_idx])
        print(f"P\t{text}\nH\t{continuation}", flush=True)
        results.append(continuation)
    return results
