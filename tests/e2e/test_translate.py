"""Translation through the CLIs: preprocess -s/-t -> train transformer_tiny -> generate -> interactive -> score."""

import os
import random
import re

import pytest

from .runner import BIN, cli, run

WORDS = ["a", "b", "c", "d", "e", "f"]


def write_bitext(folder, name, n, rng, length=(2, 5)):
    """A copy task with renamed words (target X of source x), easy enough to learn in a few updates."""
    src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*length))) for _ in range(n)]
    with open(os.path.join(folder, f"{name}.src"), "w") as f:
        f.write("".join(f"{line}\n" for line in src))
    with open(os.path.join(folder, f"{name}.tgt"), "w") as f:
        f.write("".join(f"{line.upper()}\n" for line in src))
    return src


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("translate"))
    rng = random.Random(0)
    write_bitext(root, "train", 400, rng)
    write_bitext(root, "valid", 16, rng)
    test = write_bitext(root, "test", 6, rng)
    with open(os.path.join(root, "test.src"), "a") as f:  # line 7: longer than --max-source-positions 10
        f.write("a b c d e f a b c d e f\n")
    with open(os.path.join(root, "test.tgt"), "a") as f:
        f.write("A B C D E F A B C D E F\n")
    data, save = os.path.join(root, "data-bin"), os.path.join(root, "ckpt")
    cli("preprocess", "-s", "src", "-t", "tgt", "--trainpref", f"{root}/train", "--validpref", f"{root}/valid",
        "--testpref", f"{root}/test", "--destdir", data, check=True)
    run([os.path.join(BIN, "bigseq"), "train", data, "--task", "translation", "--arch", "transformer_tiny",
         "--criterion", "label_smoothed_cross_entropy", "--dropout", "0", "--batch-size", "16", "--lr", "0.003",
         "--max-update", "60", "--save-dir", save, "--max-source-positions", "10", "--max-target-positions", "10"],
        check=True)
    return root, data, save, test


def test_generate_prints_fairseq_lines_and_bleu_and_refuses_long_sources_unless_skipped(trained):
    root, data, save, test = trained
    bad = cli("generate", data, "--path", save, "--beam", "3", "--max-len-b", "8", "--batch-size", "4")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "--skip-invalid-size-inputs-valid-test" in bad.stderr and "--max-source-positions 10" in bad.stderr
    hyp_file = os.path.join(root, "hyps.txt")
    out = cli("generate", data, "--path", save, "--beam", "3", "--nbest", "2", "--max-len-b", "8",
              "--batch-size", "4", "--skip-invalid-size-inputs-valid-test", "--hyp-file", hyp_file, check=True)
    lines = out.stdout.splitlines()
    shapes = {"S": r"S-\d+\t[a-f ]+", "T": r"T-\d+\t[A-F ]+", "H": r"H-\d+\t-?\d+\.\d+(e-\d+)?\t[A-Fa-f ]*",
              "D": r"D-\d+\t-?\d+\.\d+(e-\d+)?\t[A-Fa-f ]*", "P": r"P-\d+\t(-?\d+\.\d{4} ?)+"}
    body = lines[:-2]
    assert [line[0] for line in body] == list("STHDPHDP") * len(test)
    assert all(re.fullmatch(shapes[line[0]], line) for line in body)
    assert re.fullmatch(r"Generate test with beam=3: BLEU = \d+\.\d\d .*", lines[-2])
    assert lines[-1].startswith("sacrebleu signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    hyps = open(hyp_file).read().splitlines()
    # one line per sentence of the split: the skipped 7th (the last) stays as an empty line
    assert len(hyps) == len(test) + 1 and all(hyps[:-1]) and hyps[-1] == ""
    best = {int(line[2:].split("\t")[0]): line.split("\t")[2] for line in body[::-1] if line.startswith("D-")}
    assert hyps[:-1] == [best[i] for i in range(len(test))]
    assert float(lines[-2].split()[6]) > 30  # 60 updates learn most of the copy task
    token = cli("generate", data, "--path", save, "--beam", "3", "--max-len-b", "8", "--quiet", "--scoring",
                "bleu", "--skip-invalid-size-inputs-valid-test", check=True)
    assert re.fullmatch(r"Generate test with beam=3: BLEU4 = \d+\.\d\d, .*\n", token.stdout)
    scored = cli("score", "--sys", hyp_file, "--ref", os.path.join(root, "test.tgt"), check=True)  # line for line
    assert scored.stdout.startswith("BLEU = ")
    short = os.path.join(root, "short.txt")
    with open(short, "w") as f:
        f.write("".join(f"{h}\n" for h in hyps[:-1]))
    refused = cli("score", "--sys", short, "--ref", os.path.join(root, "test.tgt"), check=False)
    assert refused.returncode == 2 and "--sys has 6 lines but --ref 7" in refused.stderr


def test_interactive_translates_typed_lines_in_input_order(trained):
    _, data, save, _ = trained
    out = cli("interactive", data, "--path", save, "--beam", "2", "--buffer-size", "2", "--max-len-b", "8",
              stdin="a b c\nf\nd d e e\n", check=True)
    lines = out.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [f"{k}-{i}" for i in range(3) for k in "SWHDP"]
    assert [line.split("\t")[1] for line in lines if line[0] == "S"] == ["a b c", "f", "d d e e"]
