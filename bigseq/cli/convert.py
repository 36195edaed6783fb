"""`bigseq convert <universal|to-safetensors|to-hf|from-hf> ...`: checkpoint format conversions."""

from __future__ import annotations

import argparse

from bigseq.config import FlagParser
from bigseq.errors import BigseqError

SUBCOMMANDS = {
    "universal": "CKPT -> CKPT_universal: resume on another world size, ZeRO stage or pipeline size",
    "to-safetensors": "CKPT OUT_DIR: consolidated fp32 model.safetensors + config.json (+ tokenizer)",
    "to-hf": "CKPT OUT_DIR: a transformers model folder (GPT-2 or Llama style models)",
    "from-hf": "HF_DIR OUT_DIR: a transformers GPT-2/Llama folder -> bigseq consolidated model folder",
}


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = FlagParser(prog=prog, description="Convert checkpoints between bigseq, DeepSpeed and HF formats.")
    sub = parser.add_subparsers(dest="subcommand", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    p = sub.add_parser("universal", help=SUBCOMMANDS["universal"])
    p.add_argument("checkpoint", help="a save dir (its latest checkpoint) or one of its checkpoint_* folders")
    p.add_argument("--workers", type=int, default=1, help="processes extracting ZeRO shards")
    for name in ("to-safetensors", "to-hf"):
        p = sub.add_parser(name, help=SUBCOMMANDS[name])
        p.add_argument("checkpoint", help="a save dir (its latest checkpoint) or one of its checkpoint_* folders")
        p.add_argument("out_dir", help="output folder (created; must not hold a model already)")
        p.add_argument("--data", default=None, help="data folder to take the tokenizer from (default: the "
                                                    "one the model was trained on)")
    p = sub.add_parser("from-hf", help=SUBCOMMANDS["from-hf"])
    p.add_argument("hf_dir", help="a folder saved by transformers' save_pretrained (GPT-2 or Llama)")
    p.add_argument("out_dir", help="output folder; train from it with --finetune-from-model OUT_DIR")
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
    from bigseq.checkpoint import convert
    if args.subcommand == "to-safetensors":
        out = convert.to_safetensors(args.checkpoint, args.out_dir, data=args.data)
    elif args.subcommand == "to-hf":
        out = convert.to_hf(args.checkpoint, args.out_dir, data=args.data)
    else:
        out = convert.from_hf(args.hf_dir, args.out_dir)
    print(f"bigseq convert | wrote {out}", flush=True)
    return out
