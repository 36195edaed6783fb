"""`bigseq average-checkpoints --inputs ... --output OUT`: the mean of several checkpoints' weights (fairseq's
scripts/average_checkpoints.py flags)."""

from __future__ import annotations

from bigseq.config import FlagParser
from bigseq.errors import BigseqError


def build_parser(prog: str) -> FlagParser:
    p = FlagParser(prog=prog, description="Average the weights of several checkpoints of one model into a "
                                          "consolidated folder (generate, validate, --finetune-from-model and "
                                          "to-hf take it).")
    p.add_argument("--inputs", nargs="+", default=[], help="checkpoint folders (save_dir/checkpoint_N), "
                   "consolidated folders, or one save dir with --num-update-checkpoints")
    p.add_argument("--output", required=True, help="output folder (created; must not hold a model already)")
    p.add_argument("--num-update-checkpoints", type=int, default=None,
                   help="average the last N checkpoints of the save dir in --inputs, by update number")
    p.add_argument("--num-epoch-checkpoints", type=int, default=None,
                   help="fairseq's per-epoch selection; bigseq names checkpoints by update")
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
    if args.num_epoch_checkpoints is not None:
        raise BigseqError("--num-epoch-checkpoints: bigseq names checkpoints by update (checkpoint_N); use "
                          "--num-update-checkpoints N")
    from bigseq.checkpoint.average import average_checkpoints, select_inputs
    paths = select_inputs(args.inputs, args.num_update_checkpoints, args.checkpoint_upper_bound)
    out = average_checkpoints(paths, args.output, dtype=args.dtype, max_shard_size=args.max_shard_size,
                              data=args.data)
    print(f"bigseq average-checkpoints | averaged {len(paths)} checkpoints ({', '.join(paths)}) into {out}", flush=True)
    return out
