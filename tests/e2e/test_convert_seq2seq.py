"""`bigseq convert` of encoder-decoders through the CLI: a trained translation model (post-norm: FSMT; pre-norm:
M2M100) to a transformers folder with the same logits and back into training with --finetune-from-model; an
M2M100 folder in, a consolidated folder, an export with a data dir's tokenizer.json that AutoTokenizer loads as
a fast tokenizer (FSMT's and M2M100's own tokenizer classes need vocabulary files bigseq does not write), and
one-line refusals."""

import json
import os

import pytest
import torch

from .runner import TINY_TRANSLATION, cli, train, train_losses, write_bitext

pytest.importorskip("transformers")


def _random_m2m100(folder):
    import transformers
    config = transformers.M2M100Config(vocab_size=64, d_model=32, encoder_layers=2, decoder_layers=1,
                                       encoder_attention_heads=4, decoder_attention_heads=2, encoder_ffn_dim=48,
                                       decoder_ffn_dim=40, max_position_embeddings=64, attention_dropout=0.0)
    torch.manual_seed(0)
    model = transformers.M2M100ForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name else 0.0))
    model.save_pretrained(folder)
    return model


def _write_tokenizer(folder) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, **{f"w{i}": i for i in range(4, 64)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(os.path.join(folder, "tokenizer.json"))


def test_m2m100_through_the_cli_with_a_fast_tokenizer(tmp_path):
    import transformers
    hf = _random_m2m100(tmp_path / "hf")
    cli("convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "ours"), check=True)
    info = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert (info["model_name"], info["src_vocab_size"], info["tgt_vocab_size"], info["pad_idx"]) == \
        ("transformer", 64, 64, 1)
    (tmp_path / "data").mkdir()
    _write_tokenizer(tmp_path / "data")
    cli("convert", "to-hf", str(tmp_path / "ours"), str(tmp_path / "back"), "--data", str(tmp_path / "data"),
        "--dtype", "bf16", check=True)
    back = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "back").eval()
    assert back.dtype == torch.bfloat16
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    assert isinstance(tok, transformers.PreTrainedTokenizerFast) and (tok.pad_token_id, tok.eos_token_id) == (1, 2)
    src = torch.tensor([tok("w5 w6 w7")["input_ids"] + [2]])
    prev = torch.tensor([[2, 8, 9]])
    with torch.no_grad():
        want = hf(input_ids=src, decoder_input_ids=prev).logits
        got = back.float()(input_ids=src, decoder_input_ids=prev).logits
    torch.testing.assert_close(got, want, rtol=0.05, atol=0.05)  # bf16 weights


@pytest.mark.parametrize("model_type,field", [("marian", "model_type='marian'"), ("bart", "model_type='bart'")])
def test_from_hf_refuses_encoder_decoders_that_are_not_fairseqs_transformer(tmp_path, model_type, field):
    _random_m2m100(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    proc = cli("convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "out"))
    assert proc.returncode != 0 and field in proc.stderr and not (tmp_path / "out").exists()
    assert len(proc.stderr.strip().splitlines()) == 1


PRENORM = ["--encoder-normalize-before", "--decoder-normalize-before"]


@pytest.fixture(scope="module")
def bitext(tmp_path_factory):
    root = tmp_path_factory.mktemp("bitext")
    raw = write_bitext(str(root / "raw"))
    dest = str(root / "data-bin")
    cli("preprocess", "-s", "fr", "-t", "en", "--trainpref", f"{raw}/train", "--validpref", f"{raw}/valid",
        "--destdir", dest, "--joined-dictionary", check=True)
    return dest


@pytest.mark.parametrize("norm,model_type", [([], "fsmt"), (PRENORM, "m2m_100")])
def test_a_trained_translation_model_exports_with_its_logits_and_fine_tunes_back(bitext, tmp_path, norm,
                                                                                   model_type):
    import transformers

    from bigseq.checkpoint.inference import load_for_inference
    save, hf_dir = str(tmp_path / "save"), str(tmp_path / "hf")
    train(bitext, ["--max-update", "6", "--save-dir", save, "--dropout", "0.0", *norm], base=TINY_TRANSLATION)
    cli("convert", "to-hf", save, hf_dir, check=True)
    _, task, ours, _ = load_for_inference(save)
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(hf_dir).eval()
    assert hf.config.model_type == model_type and hf.config.pad_token_id == task.pad_idx == 1
    generation = json.loads(open(os.path.join(hf_dir, "generation_config.json")).read())
    assert generation["decoder_start_token_id"] == task.eos_idx and generation["early_stopping"] is True
    src = torch.tensor([[1, 1, 4, 5, 6, 2], [7, 8, 9, 10, 11, 2]])  # left-padded, as the task pads sources
    prev = torch.tensor([[2, 4, 5, 6], [2, 7, 8, 9]])
    with torch.no_grad():
        want = ours(src, None, prev)
        got = hf(input_ids=src, attention_mask=src.ne(1), decoder_input_ids=prev, use_cache=False).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # --finetune-from-model HF_DIR starts from the trained weights: its first loss is far below a fresh model's
    logs = {name: str(tmp_path / f"{name}.jsonl") for name in ("fresh", "tuned")}
    for name, extra in (("fresh", []), ("tuned", ["--finetune-from-model", hf_dir])):
        train(bitext, ["--max-update", "1", "--no-save", "--dropout", "0.0", *norm, *extra], base=TINY_TRANSLATION,
              log_file=logs[name])
    assert train_losses(logs["tuned"])[1] < train_losses(logs["fresh"])[1] - 0.3


def test_a_subword_model_exports_its_data_dirs_tokenizer(tmp_path):
    """--tokenizer train --joined-dictionary: one byte-level BPE whose ids are the dictionary's; the export
    carries it and transformers encodes the text to the ids the model was trained on."""
    import transformers

    from bigseq.data.tokenizer import Tokenizer
    raw, data, save, hf_dir = (str(tmp_path / n) for n in ("raw", "data", "save", "hf"))
    write_bitext(raw)
    cli("preprocess", "-s", "fr", "-t", "en", "--trainpref", f"{raw}/train", "--validpref", f"{raw}/valid",
        "--destdir", data, "--joined-dictionary", "--tokenizer", "train", "--vocab-size", "300", check=True)
    train(data, ["--max-update", "2", "--save-dir", save], base=TINY_TRANSLATION)
    cli("convert", "to-hf", save, hf_dir, check=True)
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    ours = Tokenizer.load(data)
    text = "le petit chat mange un poisson"
    assert tok(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
    assert (tok.pad_token_id, tok.eos_token_id) == (1, 2) and tok.decode(ours.encode(text)) == text
    assert transformers.AutoConfig.from_pretrained(hf_dir).model_type == "fsmt"
