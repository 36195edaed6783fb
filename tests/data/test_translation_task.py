"""translation task: what it tells the model family, its flags, and data-dir errors."""

import json

import pytest

from bigseq.cli.preprocess import main as preprocess_main
from bigseq.config import FlagParser, add_dataclass_args, build_config
from bigseq.errors import BigseqError
from bigseq.tasks import setup_task
from bigseq.tasks.language_modeling import LanguageModelingConfig
from bigseq.tasks.translation import TranslationConfig

DE = ["der Hund läuft", "die Katze schläft", "ein Hund"]
EN = ["the dog runs", "the cat sleeps", "a dog"]


def task(path, **kw):
    return setup_task("translation", TranslationConfig(data=str(path), **kw))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tt")
    (root / "train.de").write_text("\n".join(DE) + "\n")
    (root / "train.en").write_text("\n".join(EN) + "\n")
    return root


def preprocess(corpus, dest, *extra):
    preprocess_main(["-s", "de", "-t", "en", "--trainpref", str(corpus / "train"), "--validpref",
                     str(corpus / "train"), "--destdir", str(corpus / dest), *extra])
    return corpus / dest


def test_what_the_model_family_reads(corpus):
    t = task(preprocess(corpus, "ws"))
    # 7 de / 6 en words + 4 specials, padded to a multiple of 8
    assert (t.src_vocab_size, t.tgt_vocab_size, t.vocab_size, t.pad_idx, t.eos_idx) == (16, 16, 16, 1, 2)
    assert t.joined_dictionary is False and t.source_tokenizer is None
    assert t.source_dictionary.index("Hund") != t.source_dictionary.unk_idx
    assert t.target_dictionary.symbols[4:7] == ["dog", "the", "a"]
    joined = task(preprocess(corpus, "bpe", "--tokenizer", "train", "--joined-dictionary", "--vocab-size", "280"))
    assert joined.joined_dictionary is True and joined.src_vocab_size == joined.tgt_vocab_size
    batch = next(iter(joined.get_batch_iterator("valid", batch_size=3, max_tokens=None, seed=1, dp_rank=0,
                                                dp_size=1, shuffle=False).next_epoch_itr()))[0]
    row = batch.ids.tolist().index(0)
    assert joined.target_tokenizer.decode(batch.targets[row].tolist()) == EN[0]


def test_flags_parse_as_fairseq_names_them():
    parser = FlagParser(prog="t")
    add_dataclass_args(parser, TranslationConfig, "task")
    args = vars(parser.parse_args(["data-bin", "-s", "de", "-t", "en", "--no-left-pad-source", "--left-pad-target",
                                   "--max-source-positions", "256", "--truncate-source", "--num-batch-buckets", "4",
                                   "--skip-invalid-size-inputs-valid-test", "--eval-bleu-args", '{"beam": 4}',
                                   "--eval-bleu-detok", "moses", "--eval-bleu-remove-bpe", "@@ ",
                                   "--eval-tokenized-bleu", "--eval-bleu-print-samples"]))
    cfg = build_config(TranslationConfig, None, args)
    assert (cfg.data, cfg.source_lang, cfg.target_lang, cfg.left_pad_source, cfg.left_pad_target) == \
        ("data-bin", "de", "en", False, True)
    assert (cfg.max_source_positions, cfg.max_target_positions, cfg.num_batch_buckets) == (256, 1024, 4)
    assert cfg.eval_bleu is False and cfg.eval_bleu_remove_bpe == "@@ " and cfg.eval_tokenized_bleu


def test_eval_bleu_options(corpus):
    path = corpus / "ws"
    t = task(path, eval_bleu_args='{"beam": 5, "max_len_a": 1.2}', eval_bleu_remove_bpe="@@ ")
    settings = t.eval_bleu_settings()
    assert settings["generation"] == {"beam": 5, "max_len_a": 1.2} and settings["remove_bpe"] == "@@ "
    cases = [(dict(eval_bleu_args="{beam: 5}"), "--eval-bleu-args '{beam: 5}': not valid JSON"),
             (dict(eval_bleu_args="[5]"), "expected a JSON object"),
             (dict(eval_bleu_detok="nope"), "--eval-bleu-detok 'nope': use one of space, moses"),
             # refused when the task is built, not at the first validation an epoch later
             (dict(eval_bleu=True, eval_bleu_args='{"beem": 5}'), "use generation flag names like beam"),
             (dict(eval_bleu=True, eval_bleu_args='{"beam": 0}'), "--beam"),
             (dict(eval_bleu=True, eval_bleu_remove_bpe="bogus"), "--post-process 'bogus'")]
    for kw, message in cases:
        with pytest.raises(BigseqError, match=message.replace("[", r"\[")):
            task(path, **kw)


def test_data_dir_errors(corpus, tmp_path):
    cases = [(tmp_path / "missing", {}, "does not exist"),
             (tmp_path, {}, "has no SPLIT.SRC-TGT.LANG.bin/.idx files"),
             (corpus / "ws", dict(source_lang="fr", target_lang="en"), "dict.fr.txt not found"),
             (corpus / "ws", dict(max_target_positions=1), "must be >= 2")]
    for path, kw, message in cases:
        with pytest.raises(BigseqError, match=message):
            task(path, **kw)
    for name in ("train.de-en.de.idx", "train.fr-en.fr.idx"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(BigseqError, match=r"several language pairs \(de-en, fr-en\); choose one with -s SRC -t TGT"):
        task(tmp_path)
    with pytest.raises(BigseqError, match="split 'test' of de-en not found .* splits there: train, valid"):
        task(corpus / "ws").get_batch_iterator("test", batch_size=2, max_tokens=None, seed=1, dp_rank=0, dp_size=1)
    (tmp_path / "empty.de").write_text("")
    (tmp_path / "empty.en").write_text("")
    preprocess_main(["-s", "de", "-t", "en", "--srcdict", str(corpus / "ws" / "dict.de.txt"), "--tgtdict",
                     str(corpus / "ws" / "dict.en.txt"), "--testpref", str(tmp_path / "empty"), "--destdir",
                     str(tmp_path / "e")])
    with pytest.raises(BigseqError, match="split 'test' in .* has no sentence pairs"):
        task(tmp_path / "e").get_batch_iterator("test", batch_size=2, max_tokens=None, seed=1, dp_rank=0, dp_size=1)
    with pytest.raises(BigseqError, match="holds parallel text \\(de-en\\); train on it with --task translation"):
        setup_task("language_modeling", LanguageModelingConfig(data=str(corpus / "ws")))
    assert json.loads((corpus / "ws" / "metadata.json").read_text())["format"] == "bigseq-bitext"
