"""Tokenizer: byte-level BPE training, tokenizer.json that transformers loads, loading foreign tokenizers."""

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from bigseq.data.tokenizer import Tokenizer
from bigseq.errors import BigseqError

TEXTS = ["def add(a, b):\n    return a + b\n", "Grüße, 世界! emoji 🙂 and\ttabs  and  spaces.",
         "the quick brown fox jumps over the lazy dog " * 3]


@pytest.fixture(scope="module")
def trained():
    return Tokenizer.train(TEXTS * 20, 320)


def test_trained_specials_and_round_trip(trained):
    assert trained.special_ids() == {"bos_idx": 0, "pad_idx": 1, "eos_idx": 2, "unk_idx": 3}
    assert 260 < trained.vocab_size <= 320 and trained.kind == "byte_bpe"
    for text in TEXTS + ["never seen: ħ∂ƒ ©"]:  # byte-level: even unseen characters round-trip
        ids = trained.encode(text)
        assert trained.decode(ids) == text
        assert trained.encode_batch([text, text]) == [ids, ids]
    assert len(trained.encode(TEXTS[2])) < len(TEXTS[2]) / 2  # merges were learned


def test_tokenizer_json_loads_in_transformers(trained, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    trained.save(str(tmp_path))
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for text in TEXTS:
        ids = hf.encode(text, add_special_tokens=False)
        assert ids == trained.encode(text)
        assert hf.decode(ids, clean_up_tokenization_spaces=False) == text
    auto = AutoTokenizer.from_pretrained(str(tmp_path))  # tokenizer_config.json names the special tokens
    assert (auto.bos_token_id, auto.pad_token_id, auto.eos_token_id, auto.unk_token_id) == (0, 1, 2, 3)
    reloaded = Tokenizer.load(str(tmp_path))
    assert reloaded.kind == "byte_bpe" and reloaded.encode(TEXTS[1]) == trained.encode(TEXTS[1])


def test_load_a_transformers_folder_without_pad(tmp_path):
    from transformers import PreTrainedTokenizerFast
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=hf, eos_token="<|endoftext|>").save_pretrained(str(tmp_path))
    tok = Tokenizer.load(str(tmp_path))
    assert tok.kind == "pretrained" and tok.eos_idx == hf.token_to_id("<|endoftext|>") == 0
    assert tok.pad_idx == tok.vocab_size - 1 == hf.get_vocab_size()  # <pad> was added
    assert tok.decode(tok.encode(TEXTS[0])) == TEXTS[0]


def test_errors(tmp_path):
    with pytest.raises(BigseqError, match="at least 260"):
        Tokenizer.train(TEXTS, 100)
    with pytest.raises(BigseqError, match="tokenizer file not found"):
        Tokenizer.load(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(BigseqError, match="not a valid tokenizer.json"):
        Tokenizer.load(str(tmp_path))
