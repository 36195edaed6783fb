"""`bigseq eval-lm`: a language model's loss (nats per token) and perplexity on a split."""

from __future__ import annotations

from dataclasses import dataclass

from bigseq import registry
from bigseq.checkpoint.inference import load_for_inference
from bigseq.cli.validate import ScoreCheckpointConfig, parse
from bigseq.logging import progress_bar
from bigseq.training.evaluation import evaluate_split, lm_scores


@dataclass(kw_only=True)
class EvalLMConfig(ScoreCheckpointConfig):
    gen_subset: str = "test"
    """Split to score."""


def main(argv=None):
    args = parse(argv, "bigseq eval-lm", EvalLMConfig)
    cfg, task, model, _ = load_for_inference(args.path, data=args.data, user_dir=args.user_dir)
    # the plain cross-entropy: eval-lm reports NLL whatever criterion the model was trained with
    criterion = task.build_criterion("cross_entropy", registry.CRITERION_REGISTRY.get("cross_entropy").config_cls())
    bar = lambda it, total: progress_bar(it, log_format=args.log_format, log_interval=100, epoch=None,  # noqa: E731
                                         prefix=f"eval on '{args.gen_subset}'", total=total)
    sums = evaluate_split(task, model, criterion, args.gen_subset,
                          batch_size=args.batch_size or cfg.dataset.batch_size,
                          max_tokens=args.max_tokens or cfg.dataset.max_tokens, progress=bar)
    scores = lm_scores(sums)
    print(f"eval-lm on '{args.gen_subset}' | {scores['ntokens']} tokens | loss {scores['loss']:.4f} nats/token | "
          f"ppl {scores['ppl']:.2f}", flush=True)
    return scores
