"""`bigseq <command> ...`: dispatch to the thin mains in bigseq/cli/."""

from __future__ import annotations

import importlib
import sys

from bigseq.distributed import name_accelerator

COMMANDS = {
    "preprocess": ("bigseq.cli.preprocess", "Tokenize and binarize raw text into mmap .bin/.idx files"),
    "train": ("bigseq.cli.train", "Train a model inside a DeepSpeed engine"),
    "validate": ("bigseq.cli.validate", "Loss and perplexity of a checkpoint on a split"),
    "eval-lm": ("bigseq.cli.eval_lm", "Evaluate a language model checkpoint (loss in nats, perplexity)"),
    "generate": ("bigseq.cli.generate", "Translate a test split with beam search (BLEU), or continue LM prompts"),
    "interactive": ("bigseq.cli.interactive", "Translate lines of text typed or piped in, in input order"),
    "score": ("bigseq.cli.score", "BLEU of a hypothesis file against a reference file (sacrebleu)"),
    "convert": ("bigseq.cli.convert", "Universal (any world size), safetensors and HF conversions of checkpoints"),
    "average-checkpoints": ("bigseq.cli.average_checkpoints", "Average the weights of several checkpoints of a run"),
    "estimate-memory": ("bigseq.cli.estimate_memory", "Per-device memory of a run by ZeRO stage, and which stages fit"),
    "plot": ("bigseq.cli.plot", "Training curves of runs' --log-file JSON lines, overlaid, into an image"),
}


def usage() -> str:
    lines = ["usage: bigseq <command> [options]", "", "commands:"]
    lines += [f"  {name:<15} {doc}" for name, (_, doc) in COMMANDS.items()]
    lines += ["", "`bigseq <command> --help` lists each command's flags."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "train":  # a time-limit warning (SIGUSR1) during the imports and set-up must not kill it
        from bigseq.distributed import signal_latch
        with signal_latch.installed():
            return _dispatch(name, rest)
    return _dispatch(name, rest)


def _dispatch(name: str, rest: list[str]) -> int:
    name_accelerator()  # before a command's module imports deepspeed
    if name not in COMMANDS:
        import difflib
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"bigseq: error: unknown command '{name}'{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    from bigseq.cli.errors import run_main
    if name == "train":  # it joins a process group, and such a process must end without finalizing
        from bigseq.distributed.launch_env import run_entry_point
        run_entry_point(lambda: run_main(module.main, rest, prog=f"bigseq {name}"))
    return run_main(module.main, rest, prog=f"bigseq {name}")


if __name__ == "__main__":
    raise SystemExit(main())
