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
    # GPT-2's case: no spare token, so padding takes the id after the tokenizer's last; the tokenizer is unchanged
    assert tok.virtual_pad and tok.pad_idx == tok.vocab_size - 1 == hf.get_vocab_size() == tok.hf.get_vocab_size()
    assert tok.decode(tok.encode(TEXTS[0]) + [tok.pad_idx]) == TEXTS[0]
    (tmp_path / "saved").mkdir()
    tok.save(str(tmp_path / "saved"))
    original = HFTokenizer.from_file(str(tmp_path / "tokenizer.json")).to_str(pretty=False)
    assert (tmp_path / "saved" / "tokenizer.json").read_text() == original
    again = Tokenizer.load(str(tmp_path / "saved"))
    assert again.special_ids() == tok.special_ids() and again.vocab_size == tok.vocab_size


def _pretrained(tmp_path, specials: list[str], **named):
    """A transformers tokenizer folder whose special tokens (ids 0..) and tokenizer_config.json roles are given."""
    from transformers import PreTrainedTokenizerFast
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=hf, **named).save_pretrained(str(tmp_path))
    return hf


@pytest.mark.parametrize("specials, named, pad", [
    # Qwen2.5 base pads with its eos: eos targets would leave the loss, so a spare token pads instead
    (["<|endoftext|>", "<|im_start|>", "<|fim_pad|>"], {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
     "<|fim_pad|>"),
    # Llama 3 base: no padding token, but reserved special tokens
    (["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>"],
     {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, "<|reserved_special_token_0|>"),
    (["<s>", "</s>", "<unk>"], {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, "<unk>"),
    (["<s>", "</s>", "[PAD]"], {"bos_token": "<s>", "eos_token": "</s>"}, "[PAD]"),
])
def test_padding_takes_a_spare_token_and_never_grows_the_tokenizer(tmp_path, specials, named, pad):
    hf = _pretrained(tmp_path, specials, **named)
    tok = Tokenizer.load(str(tmp_path))
    assert not tok.virtual_pad and tok.pad_idx == hf.token_to_id(pad) and tok.pad_idx not in (tok.eos_idx,
                                                                                              tok.bos_idx)
    assert tok.vocab_size == hf.get_vocab_size() == tok.hf.get_vocab_size()


def test_a_tokenizer_without_an_end_of_document_token_is_refused(tmp_path):
    _pretrained(tmp_path, ["<|reserved_0|>"])
    with pytest.raises(BigseqError, match="no end-of-document token") as e:
        Tokenizer.load(str(tmp_path))
    assert "\n" not in str(e.value)


def test_errors(tmp_path):
    with pytest.raises(BigseqError, match="at least 260"):
        Tokenizer.train(TEXTS, 100)
    with pytest.raises(BigseqError, match="tokenizer file not found"):
        Tokenizer.load(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(BigseqError, match="not a valid tokenizer.json"):
        Tokenizer.load(str(tmp_path))
