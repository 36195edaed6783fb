"""Training curves from `--log-file` JSON lines: loss, ppl, lr, grad norm and tokens/s against updates.

Several runs overlay in one figure, one color per run; train records (tag 'train') are solid lines,
validation records (tag 'valid') dashed with markers. matplotlib is an optional extra (bigseq[plot]), drawn with Agg.
"""

from __future__ import annotations

import json
import os

from bigseq.errors import BigseqError

# (stat key, panel title, whether validation records carry it too)
PANELS = (("loss", "loss (nats)", True), ("ppl", "perplexity", True), ("lr", "learning rate", False),
          ("gnorm", "gradient norm", False), ("tokens_per_s", "tokens/s", False))


def read_log(path: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """tag ('train'/'valid') -> stat -> [(update, value)], from one --log-file."""
    curves: dict[str, dict[str, dict[int, float]]] = {"train": {}, "valid": {}}
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        raise BigseqError(f"{path}: cannot read ({e.strerror}); give a --log-file written by bigseq train") from None
    for number, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise BigseqError(f"{path}:{number}: not a JSON line; give a --log-file written by bigseq train") from None
        update = rec.get("num_updates", rec.get("update"))
        if rec.get("tag") not in curves or update is None:
            continue
        for key, value in rec.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # the last record of an update wins (a resumed run logs its updates again)
                curves[rec["tag"]].setdefault(key, {})[int(update)] = float(value)
    if not curves["train"].get("loss"):
        raise BigseqError(f"{path}: no training records with a loss; give a --log-file written by bigseq train")
    return {tag: {key: sorted(points.items()) for key, points in stats.items()} for tag, stats in curves.items()}


def _matplotlib():
    """(Figure, rcParams), or the one line that says how to install matplotlib."""
    try:
        from matplotlib import rcParams
        from matplotlib.figure import Figure
    except ImportError:
        raise BigseqError("bigseq plot needs matplotlib; pip install 'bigseq[plot]' (or: pip install "
                          "matplotlib)") from None
    return Figure, rcParams


def plot_runs(paths: list[str], out: str, names: list[str] | None = None, log_scale: bool = False):
    """Draw the runs in ``paths`` into ``out`` (png, pdf, svg: by its suffix); returns the Figure."""
    names = names or [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(names) != len(paths):
        raise BigseqError(f"--names: {len(names)} names for {len(paths)} logs; give one name per log")
    runs = [read_log(p) for p in paths]  # every file checked before drawing
    # a Figure without pyplot draws with Agg into the file and leaves the process's backend alone
    Figure, rcParams = _matplotlib()
    fig = Figure(figsize=(15, 8), layout="constrained")
    axes = fig.subplots(2, 3)
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, title, has_valid) in zip(axes.flat, PANELS):
        ax.set_title(title)
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
        if log_scale and key != "lr":
            ax.set_yscale("log")
        for i, (name, curves) in enumerate(zip(names, runs)):
            color = colors[i % len(colors)]
            for tag, style in (("train", dict(linestyle="-")), ("valid", dict(linestyle="--", marker="o")))[
                    :2 if has_valid else 1]:
                points = curves[tag].get(key)
                if points:
                    ax.plot(*zip(*points), color=color, label=f"{name} {tag}", **style)
    legend = axes.flat[-1]
    legend.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend.legend(handles, labels, loc="center", title="run")
    fig.savefig(out, dpi=100)
    return fig
