"""`bigseq plot RUN.jsonl [RUN2.jsonl ...] -o curves.png`: training curves of one or more runs."""

from __future__ import annotations

import argparse

from bigseq.logging.plot import plot_runs


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bigseq plot", description=__doc__.split(": ", 1)[1])
    parser.add_argument("logs", nargs="+", help="JSON-lines logs written by `bigseq train --log-file`")
    parser.add_argument("-o", "--output", default="curves.png", help="image to write (png, pdf, svg)")
    parser.add_argument("--names", nargs="+", help="one legend name per log (default: the file names)")
    parser.add_argument("--log-scale", action="store_true", help="log-scale y axes (all but the lr)")
    args = parser.parse_args(argv)
    plot_runs(args.logs, args.output, names=args.names, log_scale=args.log_scale)
    print(f"wrote {args.output}")
    return args.output
