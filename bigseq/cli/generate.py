"""`bigseq generate`: translate a test split with beam search, or continue prompts with a language model.

Translation (fairseq-generate): ``bigseq generate DATA --path CKPT --gen-subset test
--beam 5 [--remove-bpe] [--scoring sacrebleu|bleu] [--results-path DIR] [--hyp-file F]``
prints S-/T-/H-/D-/P- lines and the BLEU of the best hypotheses.
Language models: ``bigseq generate CKPT`` (or ``DATA --path CKPT``) continues --prompt
or the lines of standard input, greedy or with --sampling.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import dataclass, field
from typing import Literal

from bigseq.atomic_files import atomic_write_text
from bigseq.checkpoint.inference import load_for_inference
from bigseq.config import FlagParser, add_dataclass_args
from bigseq.errors import BigseqError
from bigseq.generation import BeamSearchConfig, GenerationConfig, SequenceGenerator
from bigseq.generation.token_bleu import TokenBleu
from bigseq.generation.translate import Scorer, generate_split

BEAM_ONLY = set(BeamSearchConfig.__dataclass_fields__) - set(GenerationConfig.__dataclass_fields__)
LM_ONLY = set(GenerationConfig.__dataclass_fields__) - set(BeamSearchConfig.__dataclass_fields__) | {"prompt"}


@dataclass(kw_only=True)
class GenerateCLIConfig:
    target: str = field(default="", metadata={"positional": True})
    """The data directory (with --path), or the checkpoint of a language model."""
    path: str | None = None
    """Checkpoint: a --save-dir (its latest) or one of its checkpoint_* folders."""
    prompt: str | None = None
    """Language models: text to continue (default: read prompts from standard input, one per line)."""
    data: str | None = None
    """Data directory (default: the one the model was trained on)."""
    gen_subset: str = "test"
    """Translation: the split to translate."""
    batch_size: int | None = None
    """Translation: sentences per batch (default 64 unless --max-tokens)."""
    max_tokens: int | None = None
    """Translation: at most this many (padded) tokens per batch."""
    skip_invalid_size_inputs_valid_test: bool = False
    """Translation: drop sentences longer than the model's positions instead of stopping with an error."""
    post_process: str | None = None
    """Undo subword units before printing D- and scoring: sentencepiece, subword_nmt, '@@ ' (--remove-bpe)."""
    scoring: Literal["sacrebleu", "bleu"] = "sacrebleu"
    """BLEU of the best hypotheses: sacrebleu (detokenized text) or bleu (fairseq's token BLEU)."""
    sacrebleu_tokenizer: Literal["13a", "intl", "char", "none", "zh"] = "13a"
    """sacrebleu's tokenizer."""
    sacrebleu_lowercase: bool = False
    """sacrebleu: case-insensitive BLEU."""
    results_path: str | None = None
    """Write the lines to DIR/generate-{subset}.txt instead of standard output."""
    hyp_file: str | None = None
    """Also write the best detokenized hypothesis of each sentence to this file, in input order."""
    quiet: bool = False
    """Print only the BLEU line."""
    seed: int = 1
    """Random seed for sampling."""
    user_dir: str | None = None
    """Folder of your own registered components (as in training)."""


def parse(argv):
    parser = FlagParser(prog="bigseq generate")
    seen: set[str] = set()
    add_dataclass_args(parser, GenerateCLIConfig, "options", seen)
    parser.add_argument("--remove-bpe", dest="post_process", nargs="?", const="@@ ", default=argparse.SUPPRESS,
                        help="fairseq's name of --post-process (alone: '@@ ')")
    add_dataclass_args(parser, GenerationConfig, "language models", seen)
    add_dataclass_args(parser, BeamSearchConfig, "translation (beam search)", seen)
    args = vars(parser.parse_args(argv))
    cli = GenerateCLIConfig(**{k: v for k, v in args.items() if k in GenerateCLIConfig.__dataclass_fields__})
    if not cli.target and not cli.path:
        parser.error("a checkpoint is required: `bigseq generate DATA --path CKPT` (or `bigseq generate CKPT`)")
    # output paths are checked before decoding a whole split, not after
    if cli.hyp_file and not os.path.isdir(os.path.dirname(os.path.abspath(cli.hyp_file))):
        raise BigseqError(f"--hyp-file {cli.hyp_file}: its folder does not exist; create it or write elsewhere")
    if cli.results_path and os.path.exists(cli.results_path) and not os.path.isdir(cli.results_path):
        raise BigseqError(f"--results-path {cli.results_path} is a file; it names a folder for generate-SUBSET.txt")
    return cli, args


def main(argv=None):
    cli, args = parse(argv)
    path, data = (cli.path, cli.data or cli.target or None) if cli.path else (cli.target, cli.data)
    cfg, task, model, _ = load_for_inference(path, data=data, user_dir=cli.user_dir)
    if hasattr(task, "target_dictionary"):
        lm_flags = sorted(k for k in args if k in LM_ONLY)
        if lm_flags:
            raise BigseqError(f"--{lm_flags[0].replace('_', '-')} is for language models; a translation checkpoint "
                              "translates --gen-subset (lengths: --max-len-a/--max-len-b); drop it")
        beam_cfg = BeamSearchConfig(**{k: v for k, v in args.items() if k in BeamSearchConfig.__dataclass_fields__})
        return translate(cli, task, model, beam_cfg)
    given = sorted(k for k in args if k in BEAM_ONLY and not (k == "beam" and args[k] == 1))
    if given:
        raise BigseqError(f"--{given[0].replace('_', '-')} is a beam search flag, for translation checkpoints; a "
                          "language model decodes greedily or with --sampling (drop the beam search flags)")
    gen_cfg = GenerationConfig(**{k: v for k, v in args.items() if k in GenerationConfig.__dataclass_fields__})
    return continue_prompts(cli, cfg, task, model, gen_cfg)


def translate(cli: GenerateCLIConfig, task, model, beam_cfg: BeamSearchConfig) -> dict[int, str]:
    import torch
    if torch.cuda.is_available():
        model.cuda()
    batch_size = cli.batch_size or (None if cli.max_tokens else 64)
    itr = task.get_batch_iterator(cli.gen_subset, batch_size=batch_size, max_tokens=cli.max_tokens, seed=cli.seed,
                                  dp_rank=0, dp_size=1, shuffle=False, drop_last=False,
                                  ignore_invalid_inputs=cli.skip_invalid_size_inputs_valid_test)
    batches = (batch for update in itr.next_epoch_itr() for batch in update)
    d = task.target_dictionary
    scorer = Scorer(cli.scoring, cli.sacrebleu_tokenizer, cli.sacrebleu_lowercase,
                    TokenBleu(d.pad_idx, d.eos_idx, d.unk_idx))
    with _output(cli) as out:
        best = generate_split(task, model, batches, beam_cfg, out, subset=cli.gen_subset,
                              post_process=cli.post_process, scorer=scorer, quiet=cli.quiet, seed=cli.seed)
    if cli.hyp_file:  # input order, one line per sentence of the split: one skipped as too long stays empty
        split_lines = len(getattr(getattr(itr, "dataset", None), "src", ()))  # skipped lines included
        lines = [best.get(i, "") for i in range(max(split_lines, max(best, default=-1) + 1))]
        atomic_write_text(cli.hyp_file, "".join(f"{line}\n" for line in lines))
    return best


@contextlib.contextmanager
def _output(cli: GenerateCLIConfig):
    if cli.results_path is None:
        yield sys.stdout
        return
    os.makedirs(cli.results_path, exist_ok=True)
    path = os.path.join(cli.results_path, f"generate-{cli.gen_subset}.txt")
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            yield f
        os.replace(path + ".tmp", path)
    finally:  # a failed run leaves no half-written results file
        if os.path.exists(path + ".tmp"):
            os.remove(path + ".tmp")


def continue_prompts(cli: GenerateCLIConfig, cfg, task, model, gen_cfg: GenerationConfig) -> list[str]:
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
