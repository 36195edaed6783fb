"""bigseq generate / interactive for translation: fairseq's S/T/H/D/P lines, BLEU, --hyp-file order, bad input.

The checkpoint loader is replaced by a transformer_tiny model and a small task
holding dictionaries and length-sorted batches (the translation task's contract).
"""

import io
import math
import re
from dataclasses import dataclass

import pytest
import torch

import bigseq.cli.generate as generate_cli
import bigseq.cli.interactive as interactive_cli
from bigseq.cli.errors import run_main
from bigseq.data.dictionary import Dictionary
from bigseq.generation.beam_search import BeamSearchGenerator
from bigseq.generation.config import BeamSearchConfig
from tests.generation.tiny_seq2seq import EOS, PAD, UNK, left_pad, tiny_transformer

WORDS = ["the", "ca@@", "t", "sat", "on", "a", "mat", "dog"]  # ids 4..11
SOURCES = [[4, 5, 6, EOS], [11, EOS], [4, 5, 6, 7, 8, 9, EOS], [10, 10, EOS], [7, EOS]]
TARGETS = [[4, 5, 6, EOS], [11, UNK, EOS], [4, 5, 6, 7, 8, 9, 10, EOS], [10, EOS], [7, 7, EOS]]


@dataclass
class Batch:
    ids: torch.Tensor
    src_tokens: torch.Tensor
    src_lengths: torch.Tensor
    targets: torch.Tensor


class Iterator:
    def __init__(self, batches):
        self.batches = batches

    def next_epoch_itr(self):
        return iter([[b] for b in self.batches])


class FakeTranslationTask:
    def __init__(self):
        self.source_dictionary = self.target_dictionary = Dictionary(
            ["<s>", "<pad>", "</s>", "<unk>", *WORDS], [0] * (4 + len(WORDS)))
        self.iterator_args = None

    def get_batch_iterator(self, split, **kwargs):
        self.iterator_args = (split, kwargs)
        order = sorted(range(len(SOURCES)), key=lambda i: -len(SOURCES[i]))  # longest first, as fairseq
        batches = []
        for rows in (order[:2], order[2:]):
            src, lengths = left_pad([SOURCES[i] for i in rows])
            width = max(len(TARGETS[i]) for i in rows)
            targets = torch.tensor([TARGETS[i] + [PAD] * (width - len(TARGETS[i])) for i in rows])
            batches.append(Batch(torch.tensor(rows), src, lengths, targets))
        return Iterator(batches)


@pytest.fixture
def translation(monkeypatch):
    task, model = FakeTranslationTask(), tiny_transformer(seed=2, sharpness=2.0)
    load = lambda path, data=None, user_dir=None: (None, task, model, {})  # noqa: E731
    monkeypatch.setattr(generate_cli, "load_for_inference", load)
    monkeypatch.setattr(interactive_cli, "load_for_inference", load)
    return task, model


def symbols(ids, escape_unk=False):
    names = ["<s>", "<pad>", "</s>", "<<unk>>" if escape_unk else "<unk>", *WORDS]
    return " ".join(names[i] for i in ids if i not in (EOS, PAD))


def expected_lines(model, sources, nbest, beam, ids, targets=None):
    src, lengths = left_pad(sources)
    hyps = BeamSearchGenerator(model, BeamSearchConfig(beam=beam, max_len_b=8), eos_idx=EOS, pad_idx=PAD, unk_idx=UNK,
                               vocab_size=12).generate(src, lengths)
    lines = []
    for k, sid in enumerate(ids):
        lines.append(f"S-{sid}\t{symbols(sources[k])}")
        if targets is not None:
            lines.append(f"T-{sid}\t{symbols(targets[k], escape_unk=True)}")
        for h in hyps[k][:nbest]:
            score = float(torch.tensor(h.score, dtype=torch.float32) / math.log(2))
            text = symbols(h.tokens.tolist())
            lines += [f"H-{sid}\t{score}\t{text}", f"D-{sid}\t{score}\t{text}",
                      f"P-{sid}\t" + " ".join("%.4f" % (p / math.log(2)) for p in h.positional_scores.tolist())]
    return lines


def assert_same_lines(actual, expected):
    """Equal lines; scores (H-, D-, P-) up to float noise: a batch pads sentences another does not."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        a_fields, e_fields = a.split("\t"), e.split("\t")
        if a[0] in "HD":
            assert a_fields[::2] == e_fields[::2] and float(a_fields[1]) == pytest.approx(float(e_fields[1]), abs=1e-4)
        elif a[0] == "P":
            assert a_fields[0] == e_fields[0]
            assert [float(x) for x in a_fields[1].split()] == pytest.approx([float(x) for x in e_fields[1].split()],
                                                                              abs=2e-4)
        else:
            assert a == e


def test_generate_prints_fairseq_lines_in_batch_order_bleu_and_the_hyp_file_in_input_order(translation, tmp_path):
    task, model = translation
    hyp_file = tmp_path / "hyps.txt"
    best = generate_cli.main(["data-bin", "--path", "ckpt", "--beam", "3", "--nbest", "2", "--max-tokens", "500",
                              "--max-len-b", "8", "--results-path", str(tmp_path / "out"), "--hyp-file", str(hyp_file)])
    assert task.iterator_args[0] == "test" and task.iterator_args[1]["shuffle"] is False
    lines = (tmp_path / "out" / "generate-test.txt").read_text().splitlines()
    expected = []
    for batch in task.get_batch_iterator("test").batches:
        rows = batch.ids.tolist()
        expected += expected_lines(model, [SOURCES[i] for i in rows], 2, 3, rows, [TARGETS[i] for i in rows])
    assert lines[:-2] == expected
    assert re.fullmatch(r"Generate test with beam=3: BLEU = \d+\.\d\d [\d.]+/[\d.]+/[\d.]+/[\d.]+ \(BP = .*\)",
                        lines[-2])
    assert re.fullmatch(r"sacrebleu signature: nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:.*",
                        lines[-1])
    d_lines = {int(line[2:].split("\t")[0]): line.split("\t")[2] for line in lines if line.startswith("D-")}
    first_d = {}
    for line in lines:  # the first D- of each sentence is its best
        if line.startswith("D-"):
            first_d.setdefault(int(line[2:].split("\t")[0]), line.split("\t")[2])
    assert hyp_file.read_text().splitlines() == [first_d[i] for i in range(len(SOURCES))]
    assert best == first_d and set(d_lines) == set(range(len(SOURCES)))


def test_generate_token_bleu_remove_bpe_and_quiet(translation, capsys):
    generate_cli.main(["data-bin", "--path", "ckpt", "--beam", "2", "--scoring", "bleu", "--quiet", "--remove-bpe",
                       "--max-len-b", "8"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and re.fullmatch(r"Generate test with beam=2: BLEU4 = \d+\.\d\d, .*reflen=\d+\)", out[0])
    generate_cli.main(["data-bin", "--path", "ckpt", "--beam", "2", "--remove-bpe", "--max-len-b", "8"])
    text = capsys.readouterr().out
    assert "ca@@" not in "".join(line for line in text.splitlines() if line[:2] in ("S-", "T-", "D-"))
    assert "T-1\tdog <<unk>>" in text


@pytest.mark.parametrize("argv,message", [
    (["--beam", "2", "--nbest", "3"], "--nbest 3 must be between 1 and --beam 2"),
    (["--post-process", "bpe_xx"], "--post-process 'bpe_xx': use one of"),
    (["--max-new-tokens", "5"], "--max-new-tokens is for language models; a translation checkpoint"),
])
def test_bad_generation_flags_are_one_line_errors(translation, capsys, argv, message):
    assert run_main(generate_cli.main, ["data-bin", "--path", "ckpt", *argv], prog="bigseq generate") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bigseq generate: error: ") and message in err


def test_a_language_model_checkpoint_refuses_beam_search_in_one_line(monkeypatch, capsys):
    lm_task = type("LMTask", (), {"tokenizer": None})()
    monkeypatch.setattr(generate_cli, "load_for_inference", lambda *a, **k: (None, lm_task, None, {}))
    assert run_main(generate_cli.main, ["ckpt", "--beam", "4"], prog="bigseq generate") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--beam is a beam search flag, for translation checkpoints" in err


def test_interactive_translates_lines_in_input_order(translation, monkeypatch, capsys):
    _, model = translation
    text = ["the ca@@ t", "dog", "on a mat sat", "t t"]
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in text)))
    best = interactive_cli.main(["data-bin", "--path", "ckpt", "--beam", "2", "--buffer-size", "3", "--max-len-b", "8"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [f"{k}-{i}" for i in range(4) for k in "SWHDP"]
    ids = [[4 + WORDS.index(w) for w in line.split()] + [EOS] for line in text]
    without_w = [line for line in lines if not line.startswith("W-")]
    expected = []
    for i, source in enumerate(ids):  # one sentence at a time: the same as the buffered batches
        expected += expected_lines(model, [source], 1, 2, [i])
    assert_same_lines(without_w, expected)
    assert best == [line.split("\t")[2] for line in lines if line.startswith("D-")]


def test_interactive_refuses_a_source_longer_than_the_model_positions_unless_skipped(monkeypatch, capsys):
    task, model = FakeTranslationTask(), tiny_transformer(seed=2, max_positions=(4, 64))
    monkeypatch.setattr(interactive_cli, "load_for_inference", lambda *a, **k: (None, task, model, {}))
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\non a mat sat\n"))
    assert run_main(interactive_cli.main, ["data-bin", "--path", "ckpt"], prog="bigseq interactive") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input line 2 has 5 tokens (eos included), more than the model's 4 source " \
                                   "positions" in err and "--skip-invalid-size-inputs-valid-test" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\non a mat sat\n"))
    best = interactive_cli.main(["data-bin", "--path", "ckpt", "--skip-invalid-size-inputs-valid-test",
                                 "--max-len-b", "8"])
    assert best[1] == "" and best[0] != ""


def test_generate_prints_a_batch_longest_source_first_as_fairseq(translation, capsys):
    """bigseq's collate keeps the plan's row order; fairseq's sorts a batch by source length, longest first
    (ties in batch order), and generate prints in that order."""
    task, _ = translation
    batches = task.get_batch_iterator("test").batches
    for b in batches:  # shortest first: [0, 2] and [4, 1, 3] (source lengths 4, 7 and 2, 2, 3)
        b.ids, b.src_tokens, b.src_lengths, b.targets = (t.flip(0) for t in (b.ids, b.src_tokens, b.src_lengths,
                                                                               b.targets))
    task.get_batch_iterator = lambda split, **kwargs: Iterator(batches)
    generate_cli.main(["data-bin", "--path", "ckpt", "--beam", "2", "--max-len-b", "4"])
    printed = [int(line.split("\t")[0][2:]) for line in capsys.readouterr().out.splitlines() if line.startswith("S-")]
    assert printed == [2, 0, 3, 4, 1]
