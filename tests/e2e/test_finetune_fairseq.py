"""--finetune-from-model with a `bigseq convert from-fairseq` folder, on the data-bin fairseq-preprocess made
(tests/fixtures/fairseq), read as is: the first training loss is fairseq's loss of that checkpoint."""

import json
import math

import pytest

from tests.fairseq.conftest import TRANSLATION, fixture

from .runner import cli, train, train_losses

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", TRANSLATION)
def test_first_loss_is_fairseqs_loss_of_the_checkpoint(name, tmp_path):
    folder, log = str(tmp_path / "folder"), str(tmp_path / "log.jsonl")
    cli("convert", "from-fairseq", fixture(f"{name}.pt"), folder, "--data", fixture("data-bin"), check=True)
    # one batch of the whole train split, no dropout: the loss fairseq computed over it in eval mode
    # (make_fixtures.py: the checkpoint's criterion, label smoothing 0.1); no --arch: the folder's model
    train(fixture("data-bin"), ["--task", "translation", "--finetune-from-model", folder, "--criterion",
                                "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--batch-size", "400",
                                "--dropout", "0", "--max-update", "2", "--lr", "1e-4", "--no-save",
                                "--log-interval", "1", "--log-format", "json"], base=[], log_file=log)
    with open(fixture(f"{name}_train_loss.json")) as f:
        theirs = json.load(f)
    losses = train_losses(log)
    # bigseq logs losses in nats, fairseq in bits
    assert losses[1] / math.log(2) == pytest.approx(theirs["loss"], rel=1e-5)
    assert losses[2] < losses[1]  # and it trains on from there
