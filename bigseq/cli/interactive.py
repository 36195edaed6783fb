"""`bigseq interactive DATA --path CKPT [--beam 5] < input.txt`: translate raw text lines (fairseq-interactive).

Each line is encoded as the data was binarized (the tokenizer, or the
dictionary's whitespace tokens) and translated; per line, in input order:
S- (source tokens), W- (seconds), then H-, D- and P- for the --nbest best
hypotheses. --buffer-size lines are read before they are translated together.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from bigseq.checkpoint.inference import load_for_inference
from bigseq.config import FlagParser, add_dataclass_args
from bigseq.errors import BigseqError
from bigseq.generation import BeamSearchConfig
from bigseq.generation.translate import interactive


@dataclass(kw_only=True)
class InteractiveCLIConfig:
    data: str = field(default="", metadata={"positional": True})
    """The data directory (its dictionaries and tokenizers encode the input)."""
    path: str = ""
    """Checkpoint: a --save-dir (its latest) or one of its checkpoint_* folders."""
    input: str = "-"
    """File of lines to translate ('-': standard input)."""
    buffer_size: int = 1
    """Read this many lines before translating them together."""
    batch_size: int | None = None
    """Sentences per batch (default: the whole buffer)."""
    post_process: str | None = None
    """Undo subword units before printing D-: sentencepiece, subword_nmt, '@@ ' (--remove-bpe)."""
    skip_invalid_size_inputs_valid_test: bool = False
    """Skip lines longer than the model's source positions instead of stopping with an error."""
    seed: int = 1
    """Random seed for --sampling."""
    user_dir: str | None = None
    """Folder of your own registered components (as in training)."""


def parse(argv):
    parser = FlagParser(prog="bigseq interactive")
    seen: set[str] = set()
    add_dataclass_args(parser, InteractiveCLIConfig, "options", seen)
    parser.add_argument("--remove-bpe", dest="post_process", nargs="?", const="@@ ", default=argparse.SUPPRESS,
                        help="fairseq's name of --post-process (alone: '@@ ')")
    add_dataclass_args(parser, BeamSearchConfig, "beam search", seen)
    args = vars(parser.parse_args(argv))
    cli = InteractiveCLIConfig(**{k: v for k, v in args.items() if k in InteractiveCLIConfig.__dataclass_fields__})
    beam = BeamSearchConfig(**{k: v for k, v in args.items() if k in BeamSearchConfig.__dataclass_fields__})
    if not cli.path:
        parser.error("a checkpoint is required: `bigseq interactive DATA --path CKPT`")
    if cli.buffer_size < 1:
        raise BigseqError(f"--buffer-size must be >= 1, got {cli.buffer_size}")
    return cli, beam


def main(argv=None):
    cli, beam = parse(argv)
    if beam.prefix_size:
        raise BigseqError("--prefix-size takes the prefix from reference targets; typed input has none")
    _, task, model, _ = load_for_inference(cli.path, data=cli.data or None, user_dir=cli.user_dir)
    if not hasattr(task, "target_dictionary"):
        raise BigseqError(f"{cli.path} is a language model checkpoint; `bigseq interactive` translates with "
                          "encoder-decoder models (use `bigseq generate CKPT` to continue prompts)")
    lines = sys.stdin if cli.input == "-" else _read(cli.input)
    return interactive(task, model, lines, beam, sys.stdout, buffer_size=cli.buffer_size, batch_size=cli.batch_size,
                       post_process=cli.post_process, skip_invalid=cli.skip_invalid_size_inputs_valid_test,
                       seed=cli.seed)


def _read(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BigseqError(f"--input {path}: {getattr(e, 'strerror', None) or 'not UTF-8 text'}") from None
