"""Tokenizer: an HF ``tokenizers`` tokenizer plus the special ids bigseq needs.

Either trained here (byte-level BPE, special tokens ``<s> <pad> </s> <unk>`` at
ids 0-3, like fairseq's dictionary) or loaded from a ``tokenizer.json`` (for
example a folder saved by ``transformers``). ``save(dir)`` writes
``tokenizer.json`` and a ``tokenizer_config.json`` naming the special tokens,
so ``transformers`` loads the folder (or the file) as a fast tokenizer.
"""

from __future__ import annotations

import json
import os
from typing import Iterable

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from bigseq.atomic_files import atomic_write_text
from bigseq.errors import BigseqError

SPECIAL_TOKENS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # every byte + the specials
# names other tokenizers use for the same roles, tried when no tokenizer_config.json says
_CANDIDATES = {
    "bos": ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"),
    "eos": ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "<|im_end|>"),
    "pad": ("<pad>", "<|pad|>", "[PAD]"),
    "unk": ("<unk>", "<|unk|>", "[UNK]"),
}


class Tokenizer:
    def __init__(self, hf: HFTokenizer, special: dict[str, str | None], kind: str):
        """special["pad"] None: the padding id is the one after the tokenizer's last (see ``load``)."""
        self.hf = hf
        self.kind = kind
        """'byte_bpe' (trained by bigseq) or 'pretrained' (loaded from a tokenizer.json)."""
        self.special = special
        ids = {role: (hf.token_to_id(tok) if tok is not None else None) for role, tok in special.items()}
        self.bos_idx, self.pad_idx, self.eos_idx, self.unk_idx = (ids[r] for r in ("bos", "pad", "eos", "unk"))
        self.virtual_pad = self.pad_idx is None
        if self.virtual_pad:
            self.pad_idx = hf.get_vocab_size(with_added_tokens=True)

    # building ---------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> "Tokenizer":
        """Train a byte-level BPE on an iterable of texts (or of lists of texts)."""
        if vocab_size < MIN_VOCAB:
            raise BigseqError(f"--vocab-size {vocab_size} is too small for a byte-level BPE; use at least {MIN_VOCAB}")
        hf = HFTokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk"]))
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
            special_tokens=list(SPECIAL_TOKENS.values()), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf, dict(SPECIAL_TOKENS), "byte_bpe")

    @classmethod
    def load(cls, path: str) -> "Tokenizer":
        """Load a tokenizer folder (tokenizer.json [+ tokenizer_config.json]) or a tokenizer.json file.

        The tokenizer itself is never changed: its ids are the pretrained model's. Padding needs a
        token no document predicts (padded targets are left out of the loss), so a padding token
        that is also eos or bos (Qwen2.5 base pads with its eos) is replaced by a spare one: a
        token named as padding, else an unused special token (``<|reserved_special_token_0|>``),
        else unk. A tokenizer with none of these (GPT-2's) pads with the id after its last,
        which a padded embedding row of the model serves (``virtual_pad``). A tokenizer without
        an end-of-document token is refused: every document ends with one.
        """
        folder, file = (path, os.path.join(path, "tokenizer.json")) if os.path.isdir(path) else (
            os.path.dirname(path), path)
        if not os.path.isfile(file):
            raise BigseqError(f"{file}: tokenizer file not found; point --tokenizer-dir at a folder with a "
                              "tokenizer.json (e.g. one saved by transformers), or drop it to train one")
        try:
            hf = HFTokenizer.from_file(file)
        except Exception as e:  # tokenizers raises plain Exceptions for bad JSON
            raise BigseqError(f"{file}: not a valid tokenizer.json ({str(e).splitlines()[0]}); "
                              "save the tokenizer again with transformers or tokenizers") from None
        special = cls._special_from_config(folder)
        kind = special.pop("kind", None) or "pretrained"
        vocab = hf.get_vocab(with_added_tokens=True)
        for role, names in _CANDIDATES.items():
            if special.get(role) not in vocab:
                special[role] = next((n for n in names if n in vocab), None)
        if special["eos"] is None:
            raise BigseqError(f"{file}: the tokenizer has no end-of-document token; name it as eos_token in "
                              f"tokenizer_config.json next to tokenizer.json")
        special["pad"] = _spare_pad(hf, special)
        return cls(hf, special, kind)

    @staticmethod
    def _special_from_config(folder: str) -> dict[str, str | None]:
        special: dict[str, str | None] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the later file wins
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8") as f:
                    cfg = json.load(f)
            except (OSError, json.JSONDecodeError):
                continue
            for role in SPECIAL_TOKENS:
                tok = cfg.get(f"{role}_token")
                if isinstance(tok, dict):
                    tok = tok.get("content")
                if isinstance(tok, str):
                    special[role] = tok
            if isinstance(cfg.get("bigseq_tokenizer_kind"), str):
                special["kind"] = cfg["bigseq_tokenizer_kind"]
        return special

    def save(self, folder: str) -> None:
        """Write tokenizer.json + tokenizer_config.json (atomically) into ``folder``."""
        atomic_write_text(os.path.join(folder, "tokenizer.json"), self.hf.to_str(pretty=False))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bigseq_tokenizer_kind": self.kind,
                  "clean_up_tokenization_spaces": False}
        config.update({f"{role}_token": tok for role, tok in self.special.items() if tok is not None})
        atomic_write_text(os.path.join(folder, "tokenizer_config.json"), json.dumps(config, indent=2) + "\n")

    # use --------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Ids in use: the tokenizer's, plus the padding id after them when it is virtual."""
        return self.hf.get_vocab_size(with_added_tokens=True) + int(self.virtual_pad)

    def encode(self, text: str) -> list[int]:
        """Text -> ids, without any special token (documents get their eos in preprocessing)."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids, *, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        if self.virtual_pad:  # no token of the tokenizer's: it would decode as nothing, or fail
            ids = [i for i in ids if i != self.pad_idx]
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)

    def special_ids(self) -> dict[str, int | None]:
        return {"bos_idx": self.bos_idx, "pad_idx": self.pad_idx, "eos_idx": self.eos_idx, "unk_idx": self.unk_idx}


def _spare_pad(hf: HFTokenizer, special: dict[str, str | None]) -> str | None:
    """A token to pad with that no document predicts; None: none (pad with the id after the last)."""
    predicted = {special["eos"], special.get("bos")}
    vocab = hf.get_vocab(with_added_tokens=True)
    if special.get("pad") in vocab and special["pad"] not in predicted:
        return special["pad"]
    named = [n for n in (*_CANDIDATES["pad"], "<|finetune_right_pad_id|>") if n in vocab]
    added = [t.content for _, t in sorted(hf.get_added_tokens_decoder().items()) if t.special]
    for tok in [*named, *(t for t in added if "pad" in t.lower()), *(t for t in added if "reserved" in t.lower()),
                special.get("unk")]:
        if tok is not None and tok in vocab and tok not in predicted:
            return tok
    return None
