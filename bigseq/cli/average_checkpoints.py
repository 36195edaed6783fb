"""`bigseq average-checkpoints --inputs ... --output OUT`: the mean of several checkpoints' weights (fairseq's
scripts/average_checkpoints.py flags)."""

from __future__ import annotations

import os

from bigseq.config import FlagParser
from bigseq.errors import BigseqError


def build_parser(prog: str) -> FlagParser:
    p = FlagParser(prog=prog, description="Average the weights of several checkpoints of one model into a "
                                          "consolidated folder (generate, validate, --finetune-from-model and "
                                          "to-hf take it).")
    p.add_argument("--inputs", nargs="+", default=[], help="checkpoint folders (save_dir/checkpoint_N), "
                   "consolidated folders, or one save dir with --num-update-checkpoints; or fairseq .pt files "
                   "(or a fairseq save dir with --num-epoch/--num-update-checkpoints), averaged into a .pt")
    p.add_argument("--output", required=True, help="output folder (created; must not hold a model already); "
                                                   "a .pt file for fairseq inputs")
    p.add_argument("--num-update-checkpoints", type=int, default=None,
                   help="average the last N checkpoints of the save dir in --inputs, by update number")
    p.add_argument("--num-epoch-checkpoints", type=int, default=None,
                   help="fairseq checkpoints only: the last N checkpoint{epoch}.pt files of the dir in --inputs")
    p.add_argument("--checkpoint-upper-bound", type=int, default=None,
                   help="with --num-update-checkpoints: ignore checkpoints after this update")
    p.add_argument("--data", default=None, help="data folder of the run, if it moved (tokenizer files are "
                                                "copied from it)")
    p.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                   help="dtype of the written weights; auto keeps the inputs' (training checkpoints: fp32)")
    p.add_argument("--max-shard-size", default="5GB", help="largest weights file (e.g. 5GB, 200MB)")
    return p


def main(argv=None, prog: str = "bigseq average-checkpoints"):
    args = build_parser(prog).parse_args(argv)
    if _fairseq_inputs(args):
        return _average_fairseq(args)
    if args.num_epoch_checkpoints is not None:
        raise BigseqError("--num-epoch-checkpoints: bigseq names checkpoints by update (checkpoint_N); use "
                          "--num-update-checkpoints N")
    from bigseq.checkpoint.average import average_checkpoints, select_inputs
    paths = select_inputs(args.inputs, args.num_update_checkpoints, args.checkpoint_upper_bound)
    out = average_checkpoints(paths, args.output, dtype=args.dtype, max_shard_size=args.max_shard_size,
                              data=args.data)
    print(f"bigseq average-checkpoints | averaged {len(paths)} checkpoints ({', '.join(paths)}) into {out}", flush=True)
    return out


def _fairseq_inputs(args) -> bool:
    """fairseq .pt files, or one dir holding fairseq's checkpoint*.pt names (mixed inputs are refused)."""
    from bigseq.checkpoint.average_fairseq import EPOCH_PATTERN, UPDATE_PATTERN
    files = [p.endswith(".pt") for p in args.inputs]
    if any(files) and not all(files):
        raise BigseqError("--inputs mixes fairseq .pt files with bigseq checkpoints; average one kind at a time")
    if all(files) and files:
        return True
    folder = args.inputs[0] if len(args.inputs) == 1 else None  # a fairseq save dir holds checkpoint*.pt files
    return bool(folder and os.path.isdir(folder) and any(EPOCH_PATTERN.match(n) or UPDATE_PATTERN.match(n)
                                                         for n in os.listdir(folder)))


def _average_fairseq(args):
    from bigseq.checkpoint.average_fairseq import average_fairseq, last_n_checkpoints
    counts = [n for n in (args.num_epoch_checkpoints, args.num_update_checkpoints) if n is not None]
    if len(counts) == 2:
        raise BigseqError("pass one of --num-epoch-checkpoints and --num-update-checkpoints")
    if counts:
        if len(args.inputs) != 1 or not os.path.isdir(args.inputs[0]):
            raise BigseqError("--num-epoch-checkpoints / --num-update-checkpoints take one fairseq save dir in "
                              "--inputs")
        paths = last_n_checkpoints(args.inputs[0], counts[0], by_update=args.num_update_checkpoints is not None,
                                   upper_bound=args.checkpoint_upper_bound)
    else:
        paths = args.inputs
        if not paths:
            raise BigseqError("average-checkpoints: pass --inputs PATH [PATH ...]")
    out = average_fairseq(paths, args.output)
    print(f"bigseq average-checkpoints | averaged {len(paths)} fairseq checkpoints ({', '.join(paths)}) into {out}",
          flush=True)
    return out
