"""`bigseq convert <universal|to-safetensors|to-hf|from-hf|from-fairseq|to-fairseq> ...`: checkpoint format
conversions."""

from __future__ import annotations

import argparse

from bigseq.config import FlagParser
from bigseq.errors import BigseqError

SUBCOMMANDS = {
    "universal": "CKPT -> CKPT_universal: resume on another world size, ZeRO stage or pipeline size",
    "to-safetensors": "CKPT_OR_FOLDER OUT_DIR: consolidated model folder (safetensors + config.json + tokenizer)",
    "to-hf": "CKPT_OR_FOLDER OUT_DIR: a transformers model folder",
    "from-hf": "HF_DIR OUT_DIR: a transformers folder -> bigseq consolidated model folder",
    "from-fairseq": "CHECKPOINT.pt OUT_DIR: a fairseq transformer / transformer_lm checkpoint -> consolidated folder",
    "to-fairseq": "CKPT_OR_FOLDER OUT.pt: a transformer / transformer_lm model -> a checkpoint fairseq loads",
}
SOURCE_HELP = ("a save dir (its latest checkpoint), one of its checkpoint_* folders, or a consolidated folder "
               "(written by from-hf or to-safetensors)")


def _hf_model_types() -> str:
    from bigseq.config.train_config import load_components
    from bigseq.models.family import hf_model_types
    load_components(None)  # the registered families, whose adapters name the model types they convert
    return ", ".join(hf_model_types())


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                   help="dtype of the written weights; auto keeps the source's (a training checkpoint's are fp32)")
    p.add_argument("--max-shard-size", default="5GB",
                   help="largest weights file (e.g. 5GB, 200MB, 2GiB); bigger models are written as shards "
                        "plus model.safetensors.index.json, as transformers does")


def build_parser(prog: str) -> argparse.ArgumentParser:
    types = _hf_model_types()
    parser = FlagParser(prog=prog, description=f"Convert checkpoints between bigseq, DeepSpeed and HF formats. "
                                               f"HF model types: {types}.")
    sub = parser.add_subparsers(dest="subcommand", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    p = sub.add_parser("universal", help=SUBCOMMANDS["universal"])
    p.add_argument("checkpoint", help="a save dir (its latest checkpoint) or one of its checkpoint_* folders")
    p.add_argument("--workers", type=int, default=1, help="processes extracting ZeRO shards")
    for name in ("to-safetensors", "to-hf"):
        p = sub.add_parser(name, help=SUBCOMMANDS[name] + (f" ({types})" if name == "to-hf" else ""))
        p.add_argument("checkpoint", help=SOURCE_HELP)
        p.add_argument("out_dir", help="output folder (created; must not hold a model already)")
        p.add_argument("--data", default=None, help="folder to take the tokenizer files from (default: the data "
                                                    "the model was trained on, or the consolidated folder)")
        _add_output_flags(p)
    p = sub.add_parser("from-hf", help=f"{SUBCOMMANDS['from-hf']} ({types})",
                       description=f"Import a transformers model folder. HF model types: {types}.")
    p.add_argument("hf_dir", help=f"a folder saved by transformers' save_pretrained, model_type one of: {types}")
    p.add_argument("out_dir", help="output folder; train from it with --finetune-from-model OUT_DIR")
    _add_output_flags(p)
    p = sub.add_parser("from-fairseq", help=SUBCOMMANDS["from-fairseq"])
    p.add_argument("fairseq_checkpoint", help="a .pt written by fairseq-train (transformer or transformer_lm archs); "
                                              "read without importing fairseq or running pickled code")
    p.add_argument("out_dir", help="output folder (with the data-bin's dictionaries); train or generate from it")
    p.add_argument("--data", default=None, help="the fairseq-preprocess folder with dict.*.txt (default: the "
                                                "checkpoint's recorded data dir, then the checkpoint's folder)")
    _add_output_flags(p)
    p = sub.add_parser("to-fairseq", help=SUBCOMMANDS["to-fairseq"])
    p.add_argument("checkpoint", help=SOURCE_HELP)
    p.add_argument("out_file", help="the .pt to write (must not exist)")
    p.add_argument("--data", default=None, help="data folder of the run, if it moved")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp16", "fp32"),
                   help="dtype of the written weights; auto keeps the source's")
    return parser


def main(argv=None, prog: str = "bigseq convert"):
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.subcommand is None:
        raise BigseqError(f"name a conversion: {', '.join(SUBCOMMANDS)} (see `{prog} --help`)")
    if args.subcommand == "universal":
        from bigseq.checkpoint.universal import convert_to_universal
        save_dir, tag = convert_to_universal(args.checkpoint, workers=args.workers)
        print(f"bigseq convert | wrote universal checkpoint {save_dir}/{tag}; resuming in {save_dir} picks it "
              f"up on any world size, ZeRO stage or pipeline size", flush=True)
        return tag
    if args.subcommand == "from-fairseq":
        from bigseq.checkpoint.fairseq_import import from_fairseq
        out = from_fairseq(args.fairseq_checkpoint, args.out_dir, data=args.data, dtype=args.dtype,
                           max_shard_size=args.max_shard_size)
        print(f"bigseq convert | wrote {out}", flush=True)
        return out
    if args.subcommand == "to-fairseq":
        from bigseq.checkpoint.fairseq_export import to_fairseq
        out = to_fairseq(args.checkpoint, args.out_file, data=args.data, dtype=args.dtype)
        print(f"bigseq convert | wrote {out}", flush=True)
        return out
    from bigseq.checkpoint import convert
    output = {"dtype": args.dtype, "max_shard_size": args.max_shard_size}
    if args.subcommand == "to-safetensors":
        out = convert.to_safetensors(args.checkpoint, args.out_dir, data=args.data, **output)
    elif args.subcommand == "to-hf":
        out = convert.to_hf(args.checkpoint, args.out_dir, data=args.data, **output)
    else:
        out = convert.from_hf(args.hf_dir, args.out_dir, **output)
    print(f"bigseq convert | wrote {out}", flush=True)
    return out
