"""`bigseq plot` on real logs of two tiny training runs: the image, one line per run, the errors."""

import json
import sys

import pytest

from .runner import cli, train

pytest.importorskip("matplotlib", reason="the optional plot extra is not installed")


@pytest.fixture(scope="module")
def two_logs(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("plot_logs")
    logs = []
    for lr in ("0.003", "0.001"):
        log = str(root / f"lr{lr}.jsonl")
        train(tiny_data, ["--max-update", "8", "--lr", lr, "--log-interval", "2", "--validate-interval-updates", "4",
                          "--no-save", "--save-dir", str(root / "ck")], log_file=log)
        logs.append(log)
    return logs


def test_two_runs_overlay_one_line_each(two_logs, tmp_path):
    from matplotlib.image import imread

    from bigseq.logging.plot import PANELS, plot_runs
    out = tmp_path / "curves.png"
    fig = plot_runs(two_logs, str(out), log_scale=True)
    image = imread(out)
    assert image.shape[:2] == (800, 1500)  # 15 x 8 inches at 100 dpi
    assert (image[..., :3] < 0.9).any(axis=-1).mean() > 0.02  # ink, not a blank page
    loss_ax = fig.axes[0]
    train_lines = [line for line in loss_ax.get_lines() if line.get_linestyle() == "-"]
    valid_lines = [line for line in loss_ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_label() for line in train_lines] == ["lr0.003 train", "lr0.001 train"]
    assert len({line.get_color() for line in train_lines}) == 2 and len(valid_lines) == 2
    assert list(train_lines[0].get_xdata()) == [2, 4, 6, 8] and loss_ax.get_yscale() == "log"
    losses = [json.loads(line)["loss"] for line in open(two_logs[0]) if '"tag": "train"' in line]
    assert list(train_lines[0].get_ydata()) == losses
    for ax, (_, title, _) in zip(fig.axes, PANELS):  # every stat drawn for both runs
        assert ax.get_title() == title and len([x for x in ax.get_lines() if x.get_linestyle() == "-"]) == 2


def test_cli_names_and_errors(two_logs, tmp_path):
    out = tmp_path / "named.svg"
    proc = cli("plot", *two_logs, "--names", "fast", "slow", "-o", str(out))
    assert f"wrote {out}" in proc.stdout and "fast train" in out.read_text()
    bad = cli("plot", str(tmp_path / "missing.jsonl"), check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"bigseq plot: error: {tmp_path / 'missing.jsonl'}: cannot read (No such file or directory); "
        "give a --log-file written by bigseq train"]


def test_missing_matplotlib_is_one_clear_line(two_logs, tmp_path, monkeypatch):
    from bigseq.errors import BigseqError
    from bigseq.logging.plot import plot_runs
    for module in ("matplotlib", "matplotlib.figure"):  # import raises ImportError, as when not installed
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BigseqError, match=r"bigseq plot needs matplotlib; pip install 'bigseq\[plot\]'"):
        plot_runs(two_logs, str(tmp_path / "x.png"))
