"""`bigseq convert`: training checkpoint -> safetensors / HF folder, HF folder -> bigseq, same logits."""

import json
import os

import pytest
import torch

from bigseq.checkpoint.convert import build_consolidated_model
from bigseq.checkpoint.inference import load_for_inference

from .runner import cli, train, train_losses

transformers = pytest.importorskip("transformers")
TOKENS_BT = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 7], [1, 2, 3, 4, 5, 6, 7, 8]])


def convert(*args):
    return cli("convert", *args, check=True)


@pytest.fixture(scope="module", params=["llama_tiny", "gpt2_tiny"])
def trained(request, tiny_data, tmp_path_factory):
    """A save dir of a few ZeRO-1 updates (zero_to_fp32 consolidates it) and the model loaded back."""
    save = str(tmp_path_factory.mktemp("trained") / "save")
    train(tiny_data, ["--arch", request.param, "--max-update", "6", "--zero-stage", "1", "--save-dir", save])
    _, _, model, _ = load_for_inference(save)
    return save, model


def _logits(model):
    with torch.no_grad():
        return model(TOKENS_BT).float()


def test_to_hf_gives_our_logits_in_transformers(trained, tmp_path):
    save, ours = trained
    out = str(tmp_path / "hf")
    convert("to-hf", save, out)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        hf_logits = hf(TOKENS_BT).logits
    torch.testing.assert_close(hf_logits, _logits(ours), rtol=1e-5, atol=1e-5)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.decode(tok("the cat eats fish")["input_ids"]) == "the cat eats fish"


def test_safetensors_round_trip_and_finetune(trained, tiny_data, tmp_path):
    save, ours = trained
    out = str(tmp_path / "st")
    convert("to-safetensors", save, out)
    with open(os.path.join(out, "config.json")) as f:
        info = json.load(f)
    assert info["bigseq_format"] == "consolidated" and info["num_updates"] == 6
    assert os.path.exists(os.path.join(out, "tokenizer.json"))
    back = build_consolidated_model(out)
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    torch.testing.assert_close(_logits(back), _logits(ours), rtol=0, atol=0)
    # --finetune-from-model starts from those weights: its first loss is the trained model's, not a fresh one's
    arch = info["names"]["arch"]
    logs = {name: str(tmp_path / f"{name}.jsonl") for name in ("fresh", "tuned")}
    train(tiny_data, ["--arch", arch, "--max-update", "1", "--no-save"], log_file=logs["fresh"])
    train(tiny_data, ["--arch", arch, "--max-update", "1", "--no-save", "--finetune-from-model", out],
          log_file=logs["tuned"])
    assert train_losses(logs["tuned"])[1] < train_losses(logs["fresh"])[1] - 0.3


def _random_hf(style: str, tied: bool):
    if style == "gpt2":
        config = transformers.GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                         tie_word_embeddings=tied)
        cls = transformers.GPT2LMHeadModel
    else:
        config = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                          tie_word_embeddings=tied)
        cls = transformers.LlamaForCausalLM
    torch.manual_seed(0)
    model = cls(config).eval()
    with torch.no_grad():  # every tensor random, norms included, so a swapped key shows
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "ln" in name or "norm" in name else 0.0))
    return model


@pytest.mark.parametrize("style,tied", [("gpt2", True), ("llama", False), ("llama", True)])
def test_from_hf_gives_hf_logits_in_bigseq(style, tied, tmp_path):
    hf = _random_hf(style, tied)
    hf.save_pretrained(str(tmp_path / "hf"))
    convert("from-hf", str(tmp_path / "hf"), str(tmp_path / "ours"))
    ours = build_consolidated_model(str(tmp_path / "ours"))
    with torch.no_grad():
        want = hf(TOKENS_BT).logits
    torch.testing.assert_close(_logits(ours), want, rtol=1e-5, atol=1e-5)


def test_convert_refuses_a_non_empty_output(trained, tmp_path):
    save, _ = trained
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    proc = cli("convert", "to-safetensors", save, str(tmp_path / "busy"))
    assert proc.returncode != 0 and "not empty" in proc.stderr
    assert (tmp_path / "busy" / "x").read_text() == "keep me"
