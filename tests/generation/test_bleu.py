"""Token BLEU (fairseq's C scorer) by hand, sacrebleu and its signature, --eval-bleu statistics, bigseq score."""

import math

import pytest
import sacrebleu
import torch

from bigseq.cli.errors import run_main
from bigseq.cli.score import main as score_main
from bigseq.data.dictionary import Dictionary
from bigseq.errors import BigseqError
from bigseq.generation.beam_search import BeamSearchGenerator
from bigseq.generation.config import BeamSearchConfig
from bigseq.generation.scoring import BleuStats, corpus_bleu, eval_bleu_statistics
from bigseq.generation.text import SideText, post_process
from bigseq.generation.token_bleu import TokenBleu
from tests.generation.tiny_seq2seq import EOS, PAD, UNK, left_pad, tiny_transformer


def test_token_bleu_equals_a_hand_computation():
    # ref  5 6 7 8 9 </s>  hyp  5 6 7 9 </s> <pad>   (trailing eos/pad trimmed)
    # 1-grams 4/4, 2-grams 2/3 (5 6, 6 7), 3-grams 1/2 (5 6 7), 4-grams 0/1  -> no smoothing: BLEU 0
    bleu = TokenBleu(pad=PAD, eos=EOS, unk=UNK)
    bleu.add(torch.tensor([5, 6, 7, 8, 9, EOS]), torch.tensor([5, 6, 7, 9, EOS, PAD]))
    assert (bleu.matches, bleu.totals, bleu.sys_len, bleu.ref_len) == ([4, 2, 1, 0], [4, 3, 2, 1], 4, 5)
    assert bleu.score() == 0.0
    # a second pair, all right (5/5, 4/4, 3/3, 2/2): the corpus sums the counts before the precisions
    bleu.add([4, 5, 6, 7, 8, EOS], [4, 5, 6, 7, 8, EOS])
    assert (bleu.matches, bleu.totals, bleu.sys_len, bleu.ref_len) == ([9, 6, 4, 2], [9, 7, 5, 3], 9, 10)
    expected = math.exp(1 - 10 / 9) * (1 * 6 / 7 * 4 / 5 * 2 / 3) ** 0.25 * 100
    assert bleu.score() == pytest.approx(expected)
    assert bleu.result_string() == (f"BLEU4 = {expected:.2f}, 100.0/85.7/80.0/66.7 (BP={math.exp(1 - 10 / 9):.3f}, "
                                    "ratio=0.900, syslen=9, reflen=10)")


def test_token_bleu_clips_repeated_ngrams_and_a_reference_unk_never_matches():
    bleu = TokenBleu(pad=PAD, eos=EOS, unk=UNK)
    bleu.add([5, UNK, 5, EOS], [5, 5, 5, UNK, EOS])
    assert bleu.matches[0] == 2 and bleu.totals[0] == 4  # 5 counted twice at most, the unk not at all
    words = TokenBleu()
    words.add_words("the cat sat", "the the cat")
    assert words.matches[:2] == [2, 1] and words.totals[:2] == [3, 2]


def test_sacrebleu_corpus_score_and_signature():
    hyps, refs = ["the cat sat on the mat .", "a dog barked"], ["the cat sat on a mat .", "the dog barked"]
    score, signature = corpus_bleu(hyps, refs)
    assert score.score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert "case:lc" in corpus_bleu(hyps, refs, lowercase=True)[1]
    assert "tok:none" in corpus_bleu(hyps, refs, tokenize="none")[1]


def test_post_process_undoes_subword_units_as_fairseq():
    assert post_process("the ca@@ t sat", "@@ ") == "the cat sat"
    assert post_process("the ca@@ t sat", "subword_nmt") == "the cat sat"
    assert post_process("\u2581the \u2581c at", "sentencepiece") == "the cat"
    assert post_process("a b", None) == "a b"


def dictionary(words):
    return Dictionary(["<s>", "<pad>", "</s>", "<unk>", *words], [0] * (4 + len(words)))


def test_side_text_strings_skip_specials_and_escape_unk():
    d = dictionary(["ca@@", "t", "sat"])
    text = SideText(d, None, "@@ ")
    assert text.tokens([4, 5, 3, 6, 2]) == "cat <unk> sat"
    assert text.detok([4, 5, 3, 6, 2, 1], escape_unk=True) == "cat <<unk>> sat"
    assert text.encode("sat  ca@@ dog") == [6, 4, 3, 2]


def test_eval_bleu_statistics_sum_to_the_corpus_bleu_of_all_batches(capsys):
    model = tiny_transformer(vocab=12, seed=3, sharpness=3.0)
    d = dictionary([f"w{i}" for i in range(8)])
    sources = [[4, 5, 6, EOS], [7, EOS], [5, 5, 8, 9, 4, EOS], [9, 10, EOS]]
    refs = [[5, 6, 7, EOS], [7, 8, EOS], [UNK, 9, EOS], [11, 10, 9, EOS]]

    class Batch:
        def __init__(self, rows):
            self.ids = torch.tensor(rows)
            self.src_tokens, self.src_lengths = left_pad([sources[i] for i in rows])
            self.targets = torch.stack([torch.tensor(refs[i] + [PAD] * (4 - len(refs[i]))) for i in rows])

    generation = {"beam": 3, "max_len_b": 5}
    # the keywords as the translation task's eval_bleu_settings() gives them
    settings = {"generation": generation, "detok": "space", "detok_args": {}, "tokenized": False, "remove_bpe": None,
                "print_samples": True}
    stats = [eval_bleu_statistics(model, Batch(rows), target_dictionary=d, **settings) for rows in ([0, 1], [2, 3])]
    assert capsys.readouterr().out.count("example reference: ") == 2
    filler = eval_bleu_statistics(model, Batch([-1]), target_dictionary=d, **settings)  # ids -1: a rank's filler row
    assert filler == BleuStats() and filler.bleu() == 0.0
    total = BleuStats.from_logging_output({k: a + b for (k, a), b in zip(stats[0].logging_output().items(),
                                                                        stats[1].logging_output().values())})
    generator = BeamSearchGenerator(model, BeamSearchConfig(**generation), eos_idx=EOS, pad_idx=PAD, unk_idx=UNK)
    hyps = generator.generate(*left_pad(sources))
    text = SideText(d)
    hyp_text = [text.detok(h[0].tokens, unk_string="UNKNOWNTOKENINHYP") for h in hyps]
    ref_text = [text.detok(r, unk_string="UNKNOWNTOKENINREF") for r in refs]
    whole = sacrebleu.corpus_bleu(hyp_text, [ref_text])
    assert (total.counts, total.totals, total.sys_len, total.ref_len) == (whole.counts, whole.totals,
                                                                          whole.sys_len, whole.ref_len)
    assert total.bleu() == pytest.approx(whole.score)
    assert total.sys_len > 0
    with pytest.raises(BigseqError, match="--eval-bleu-args"):
        eval_bleu_statistics(model, Batch([0]), generation={"beam_size": 2}, target_dictionary=d)
    with pytest.raises(BigseqError, match="--eval-bleu-detok 'nltk' is not supported"):
        eval_bleu_statistics(model, Batch([0]), generation=generation, target_dictionary=d, detok="nltk")


def test_bigseq_score_prints_bleu_with_its_signature_and_refuses_mismatched_files(tmp_path, capsys):
    hyp, ref, short = tmp_path / "hyp.txt", tmp_path / "ref.txt", tmp_path / "short.txt"
    hyp.write_text("the cat sat on the mat .\nA dog barked\n")
    ref.write_text("the cat sat on a mat .\na dog barked\n")
    short.write_text("one line\n")
    out = score_main(["--sys", str(hyp), "--ref", str(ref)])
    assert out[0].startswith("BLEU = ") and out[1].startswith("sacrebleu signature: nrefs:1|case:mixed|")
    cased = float(out[0].split()[2])
    assert float(score_main(["--sys", str(hyp), "--ref", str(ref), "--ignore-case"])[0].split()[2]) > cased
    assert len(score_main(["--sys", str(hyp), "--ref", str(ref), "--sentence-bleu"])) == 2
    assert score_main(["--sys", str(hyp), "--ref", str(ref), "--tokenized-bleu"])[0].startswith("BLEU4 = ")
    capsys.readouterr()
    assert run_main(score_main, ["--sys", str(short), "--ref", str(ref)], prog="bigseq score") == 2
    err = capsys.readouterr().err.strip()
    assert err == "bigseq score: error: --sys has 1 lines but --ref 2; they must match line for line"
