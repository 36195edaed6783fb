"""`bigseq validate`: the criterion's loss and perplexity of a checkpoint on a split."""

from __future__ import annotations

from dataclasses import dataclass, field

from bigseq.checkpoint.inference import load_for_inference
from bigseq.config import FlagParser, add_dataclass_args
from bigseq.logging import progress_bar
from bigseq.training.evaluation import evaluate_split


@dataclass(kw_only=True)
class ScoreCheckpointConfig:
    """Options shared by the commands that score a checkpoint on a split."""

    path: str = field(default="", metadata={"positional": True})
    """Checkpoint: a --save-dir (its latest) or one of its checkpoint_* folders."""
    data: str | None = None
    """Data directory (default: the one the model was trained on)."""
    batch_size: int | None = None
    """Sentences per batch (default: the training run's)."""
    max_tokens: int | None = None
    """Tokens per batch (default: the training run's)."""
    user_dir: str | None = None
    """Folder of your own registered components (as in training)."""
    log_format: str | None = None
    """Progress format: tqdm, simple, json, none."""


@dataclass(kw_only=True)
class ValidateConfig(ScoreCheckpointConfig):
    valid_subset: str = "valid"
    """Split(s) to score, comma-separated."""


def parse(argv, prog: str, cls=ValidateConfig):
    parser = FlagParser(prog=prog)
    add_dataclass_args(parser, cls, "options")
    cfg = cls(**vars(parser.parse_args(argv)))
    if not cfg.path:
        parser.error("a checkpoint path is required")
    return cfg


def main(argv=None):
    args = parse(argv, "bigseq validate")
    cfg, task, model, _ = load_for_inference(args.path, data=args.data, user_dir=args.user_dir)
    criterion = task.build_criterion(cfg.names["criterion"], cfg.criterion)
    results = {}
    for split in args.valid_subset.split(","):
        bar = lambda it, total: progress_bar(it, log_format=args.log_format, log_interval=100, epoch=None,  # noqa: E731
                                             prefix=f"valid on '{split}'", total=total)
        sums = evaluate_split(task, model, criterion, split, batch_size=args.batch_size or cfg.dataset.batch_size,
                              max_tokens=args.max_tokens or cfg.dataset.max_tokens, progress=bar)
        stats = criterion.reduce_metrics(sums)
        stats["ntokens"] = int(sums["ntokens"])
        print(f"valid on '{split}' | " + " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in stats.items()), flush=True)
        results[split] = stats
    return results
