"""``bigseq preprocess``: tokenize raw text (or parallel text, with -s/-t) into a data directory.

    bigseq preprocess --trainpref train.txt --validpref valid.txt --destdir data-bin [--vocab-size 32000]
    bigseq preprocess -s de -t en --trainpref bpe/train --validpref bpe/valid --destdir data-bin [--joined-dictionary]
"""

from __future__ import annotations

import sys

from bigseq.config import FlagParser, add_dataclass_args, build_config, main_argv
from bigseq.data.preprocessing import PreprocessConfig, preprocess
from bigseq.errors import BigseqError


def build_parser(prog: str = "bigseq preprocess") -> FlagParser:
    parser = FlagParser(prog=prog, description="Tokenize text/json/parquet/HF datasets into mmap .bin/.idx "
                                               "files, a tokenizer.json and metadata.json.")
    add_dataclass_args(parser, PreprocessConfig, "preprocess")
    return parser


def main(argv=None) -> None:
    """Parse the flags and run preprocessing (raises BigseqError on bad input)."""
    args = vars(build_parser().parse_args(main_argv(argv)))
    preprocess(build_config(PreprocessConfig, None, args))


if __name__ == "__main__":
    try:
        main()
    except BigseqError as e:
        print(f"bigseq: error: {e}", file=sys.stderr)
        sys.exit(2)
