"""The translation path from a user's commands: bitext preprocess -> train (token-bucketed batches) -> resume.

A token-bucketed micro-batch holds a varying number of sentences; the loss is normalised by the global
target-token count, so any world size and ZeRO stage gives the one-rank losses, and a run resumed
mid-epoch continues exactly."""

import json
import os

import pytest

from .runner import MULTI_RANK, TINY_TRANSLATION, cli, train, train_losses, write_bitext

pytestmark = pytest.mark.slow
UPDATES = 8


@pytest.fixture(scope="module")
def bitext(tmp_path_factory):
    root = tmp_path_factory.mktemp("bitext")
    raw = write_bitext(str(root / "raw"))
    dest = str(root / "data-bin")
    cli("preprocess", "-s", "fr", "-t", "en", "--trainpref", f"{raw}/train", "--validpref", f"{raw}/valid",
        "--testpref", f"{raw}/test", "--destdir", dest, "--joined-dictionary", check=True)
    return dest


def _train(data, args, **kw):
    return train(data, args, base=TINY_TRANSLATION, **kw)


# validation translates the valid set with beam search and logs corpus BLEU (statistics summed over ranks)
EVAL_BLEU = ["--eval-bleu", "--eval-bleu-args", '{"beam": 2, "max_len_a": 1.2, "max_len_b": 5}']


def _valid_bleu(log_file: str) -> float:
    with open(log_file) as f:
        records = [json.loads(line) for line in f]
    return [r["bleu"] for r in records if r.get("tag") == "valid"][-1]


@pytest.fixture(scope="module")
def reference(bitext, tmp_path_factory):
    log = str(tmp_path_factory.mktemp("ref") / "log.jsonl")
    _train(bitext, ["--max-update", str(UPDATES), "--no-save", "--dropout", "0.0", *EVAL_BLEU], log_file=log)
    losses = train_losses(log)
    assert sorted(losses) == list(range(1, UPDATES + 1)) and losses[UPDATES] < losses[1] - 0.3  # it learns
    return losses, _valid_bleu(log)


@pytest.mark.launcher
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_stage_on_two_ranks_matches_one_rank(bitext, tmp_path, reference, stage):
    log = str(tmp_path / "log.jsonl")
    _train(bitext, ["--max-update", str(UPDATES), "--no-save", "--dropout", "0.0", "--zero-stage", str(stage),
                    *EVAL_BLEU], nproc=2, launcher=MULTI_RANK, log_file=log)
    got, (want_losses, want_bleu) = train_losses(log), reference
    assert sorted(got) == sorted(want_losses)
    for n, want in want_losses.items():
        assert abs(got[n] - want) <= 2e-5, (n, got[n], want)
    assert _valid_bleu(log) == pytest.approx(want_bleu, abs=1e-6)  # each rank translates its half


def test_resume_mid_epoch_is_exact(bitext, tmp_path):
    straight, first, resumed = (str(tmp_path / f"{name}.jsonl") for name in ("straight", "first", "resumed"))
    common = ["--dropout", "0.1", "--save-interval-updates", "5"]
    _train(bitext, [*common, "--max-update", "14", "--save-dir", str(tmp_path / "a")], log_file=straight)
    _train(bitext, [*common, "--max-update", "5", "--save-dir", str(tmp_path / "b")], log_file=first)
    proc = _train(bitext, [*common, "--max-update", "14", "--save-dir", str(tmp_path / "b")], log_file=resumed)
    assert "resumed from" in proc.stdout
    a, b = train_losses(straight), train_losses(resumed)
    # the resumed run logs updates 6-14 only (a restart from update 1 would log 1-14) and each equals the straight one
    assert sorted(b) == list(range(6, 15)) and all(a[n] == b[n] for n in range(6, 15)), (a, b)


def test_share_all_embeddings_without_a_joined_dictionary_is_one_line(tmp_path):
    raw = write_bitext(str(tmp_path / "raw"))
    dest = str(tmp_path / "separate")
    cli("preprocess", "-s", "fr", "-t", "en", "--trainpref", f"{raw}/train", "--validpref", f"{raw}/valid",
        "--destdir", dest, check=True)
    proc = _train(dest, ["--max-update", "1", "--no-save"], check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--share-all-embeddings" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
    assert os.path.isfile(os.path.join(dest, "dict.fr.txt"))
