"""`bigseq generate` on a from-fairseq folder prints fairseq-generate's lines (generate/*.txt, recorded by
fixtures/fairseq/make_fixtures.py with the same flags)."""

import importlib.util
import os

import pytest

from bigseq.checkpoint.fairseq_import import from_fairseq
from bigseq.cli import generate as generate_cli
from tests.fairseq.conftest import TRANSLATION, fixture

_spec = importlib.util.spec_from_file_location("make_fixtures", fixture("make_fixtures.py"))
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)
# GENERATE_COMMON's flags as bigseq spells them (-s/-t come from the checkpoint, the batches are never dropped)
COMMON = ["--gen-subset", "test", "--beam", "5", "--batch-size", "8", "--scoring", "bleu", "--seed", "1"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = tmp_path_factory.mktemp("from-fairseq")
    return {name: from_fairseq(fixture(f"{name}.pt"), str(out / name), data=fixture("data-bin"))
            for name in TRANSLATION}


def output_lines(text: str) -> list[list[str]]:
    """The S-/T-/H-/D-/P- lines and the BLEU line, tab-split; fairseq's log lines are on stderr."""
    return [line.split("\t") for line in text.splitlines() if line[:2] in ("S-", "T-", "H-", "D-", "P-")
            or line.startswith("Generate ")]


def assert_same_line(ours: list[str], theirs: list[str]) -> None:
    """Equal, but scores within 1e-4: the two models sum the same float32 products in another order, so a
    score differs in its last float32 bits (H-/D- print all of them), and a P- score printed with 4 decimals
    can round to the neighbouring last digit."""
    assert len(ours) == len(theirs) and ours[0] == theirs[0], (ours, theirs)
    if ours[0][:2] in ("H-", "D-"):
        assert abs(float(ours[1]) - float(theirs[1])) <= 1e-4 and ours[2:] == theirs[2:], (ours, theirs)
    elif ours[0][:2] == "P-":
        a, b = ours[1].split(), theirs[1].split()
        assert len(a) == len(b) and all(abs(float(x) - float(y)) <= 1.0001e-4 for x, y in zip(a, b)), (ours, theirs)
    else:
        assert ours == theirs


@pytest.mark.parametrize("variant", list(make_fixtures.GENERATE))
@pytest.mark.parametrize("name", TRANSLATION)
def test_generate_matches_fairseq(folders, capsys, name, variant):
    with open(fixture(os.path.join("generate", f"{name}_{variant}.txt"))) as f:
        theirs = output_lines(f.read())
    generate_cli.main([fixture("data-bin"), "--path", folders[name], *COMMON, *make_fixtures.GENERATE[variant]])
    ours = output_lines(capsys.readouterr().out)
    assert len(theirs) > 31 * 5 and theirs[-1][0].startswith("Generate test with beam=5: BLEU4")
    assert [line[0] for line in ours] == [line[0] for line in theirs]  # same sentences, same order
    for a, b in zip(ours, theirs):
        assert_same_line(a, b)


def test_a_folder_without_a_run_needs_the_data_dir(folders):
    from bigseq.checkpoint.inference import load_for_inference
    from bigseq.errors import BigseqError
    folder = folders["transformer_prenorm"]
    with pytest.raises(BigseqError, match="records no data dir; pass the data dir it was trained on"):
        load_for_inference(folder)
    cfg, task, model, _ = load_for_inference(folder, data=fixture("data-bin"))
    # the language pair fairseq recorded, the model's positions (--max-source-positions 64)
    assert (task.source_lang, task.target_lang, cfg.task.max_source_positions) == ("src", "tgt", 64)
    assert cfg.names["task"] == "translation" and not model.training
