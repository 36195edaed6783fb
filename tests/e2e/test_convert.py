"""`bigseq convert`: training checkpoint -> safetensors / HF folder, HF folder -> bigseq, same logits; sharded
input and output, dtype kept, bit-exact round trips with the tokenizer files byte-identical, refusals."""

import json
import os
import shutil

import pytest
import torch

from bigseq.checkpoint.convert import build_consolidated_model
from bigseq.checkpoint.hf_files import with_both_rope_styles
from bigseq.checkpoint.hf_read import TensorReader
from bigseq.checkpoint.hf_write import parse_size
from bigseq.checkpoint.inference import load_for_inference
from bigseq.errors import BigseqError

from .runner import cli, train, train_losses

transformers = pytest.importorskip("transformers")
TOKENS_BT = torch.tensor([[5, 17, 42, 8, 99, 3, 250, 7], [1, 2, 3, 4, 5, 6, 7, 8]])


# written by hand, spacing included, so a file rebuilt by a library instead of copied shows
ARTIFACTS = {
    "chat_template.jinja": "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}",
    "generation_config.json": '{\n  "eos_token_id": [1, 2],\n  "temperature": 0.7,   "top_p": 0.9,\n'
                              '  "do_sample": true\n}\n',
    "tokenizer_config.json": '{"bos_token": "<s>",  "eos_token": "</s>", "pad_token": "<pad>"}',
    "special_tokens_map.json": '{"eos_token": "</s>"}\n',
}


def convert(*args):
    return cli("convert", *args, check=True)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _tensors(folder) -> dict[str, torch.Tensor]:
    with TensorReader(str(folder)) as reader:
        return {name: reader.get(name) for name in reader.names()}


def _assert_same_tensors(a, b) -> None:
    ta, tb = _tensors(a), _tensors(b)
    assert sorted(ta) == sorted(tb)
    for k, v in ta.items():
        assert v.dtype == tb[k].dtype and torch.equal(v, tb[k]), k


def _write_tokenizer(folder, size: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2, **{f"w{i}": i for i in range(3, size)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(os.path.join(folder, "tokenizer.json"))


def _config(folder) -> dict:
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f)


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


def test_to_hf_gives_our_logits_in_transformers(trained, tiny_data, tmp_path):
    save, ours = trained
    out = str(tmp_path / "hf")
    convert("to-hf", save, out)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    for name in ("tokenizer.json", "tokenizer_config.json"):  # the data's own files, not rebuilt
        assert _read(os.path.join(out, name)) == _read(os.path.join(tiny_data, name)), name
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


def _hf_folder(path, style: str, tied: bool, shard: str = "20KB"):
    """A random HF model saved in bf16 and small shards, with tokenizer, chat template and generation config."""
    model = _random_hf(style, tied).to(torch.bfloat16)
    model.save_pretrained(str(path), max_shard_size=shard)
    for name, text in ARTIFACTS.items():
        (path / name).write_text(text)
    _write_tokenizer(str(path), 50)
    return model


@pytest.mark.parametrize("style,tied", [("gpt2", True), ("llama", False)])
def test_from_hf_streams_sharded_bf16_and_keeps_it(style, tied, tmp_path):
    _hf_folder(tmp_path / "hf", style, tied)
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    convert("from-hf", str(tmp_path / "hf"), str(tmp_path / "ours"), "--max-shard-size", "30KB")
    assert _config(tmp_path / "ours")["dtype"] == "bfloat16"
    assert (tmp_path / "ours" / "model.safetensors.index.json").exists()
    assert {t.dtype for t in _tensors(tmp_path / "ours").values()} == {torch.bfloat16}
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval()
    with torch.no_grad():  # a model loaded in fp32 (bf16 in memory would round its RoPE frequencies too)
        want = hf(TOKENS_BT).logits
    torch.testing.assert_close(_logits(build_consolidated_model(str(tmp_path / "ours"))), want, rtol=1e-5, atol=1e-5)


def test_to_hf_writes_shards_that_transformers_loads(trained, tmp_path):
    save, ours = trained
    out, out16 = str(tmp_path / "hf"), str(tmp_path / "hf16")
    convert("to-hf", save, out, "--max-shard-size", "50KB")
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        index = json.load(f)
    assert index["metadata"]["total_size"] > 0 and len(set(index["weight_map"].values())) > 1
    assert _config(out)["dtype"] == _config(out)["torch_dtype"] == "float32"  # a training checkpoint's are fp32
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(TOKENS_BT).logits, _logits(ours), rtol=1e-5, atol=1e-5)
    convert("to-hf", save, out16, "--dtype", "bf16")
    assert _config(out16)["dtype"] == "bfloat16"
    assert {t.dtype for t in _tensors(out16).values()} == {torch.bfloat16}


@pytest.mark.parametrize("style,tied", [("gpt2", True), ("llama", False), ("llama", True)])
def test_round_trip_is_bit_exact_with_the_same_files(style, tied, tmp_path):
    src, ours, back, ours_again = (tmp_path / n for n in ("src", "ours", "back", "ours_again"))
    _hf_folder(src, style, tied)
    convert("from-hf", str(src), str(ours), "--max-shard-size", "30KB")
    convert("to-hf", str(ours), str(back), "--max-shard-size", "30KB")
    _assert_same_tensors(src, back)  # HF -> bigseq -> HF
    convert("from-hf", str(back), str(ours_again))
    _assert_same_tensors(ours, ours_again)  # bigseq -> HF -> bigseq
    for name in [*ARTIFACTS, "tokenizer.json"]:
        assert _read(src / name) == _read(ours / name) == _read(back / name), name
    config = _config(back)
    assert config["dtype"] == config["torch_dtype"] == "bfloat16"
    assert all(config.get(k) == _config(src).get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id"))
    if style == "llama":  # both RoPE key styles: transformers 5 reads the first, 4.x the second
        assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}
        assert config["rope_theta"] == 10000.0 and config["rope_scaling"] is None
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(back))
    assert hf.dtype == torch.bfloat16 and hf.generation_config.eos_token_id == [1, 2]


def test_dtype_flag_and_to_safetensors_of_a_consolidated_folder(tmp_path):
    src, ours, ours32, back32, back16 = (tmp_path / n for n in ("src", "ours", "ours32", "back32", "back16"))
    _hf_folder(src, "llama", False)
    convert("from-hf", str(src), str(ours))
    convert("to-safetensors", str(ours), str(ours32), "--dtype", "fp32")
    bf16, fp32 = _tensors(ours), _tensors(ours32)
    assert _config(ours32)["dtype"] == "float32"
    assert all(fp32[k].dtype == torch.float32 and torch.equal(fp32[k], v.float()) for k, v in bf16.items())
    assert _read(ours32 / "chat_template.jinja") == _read(src / "chat_template.jinja")
    convert("to-hf", str(ours32), str(back32))
    assert _config(back32)["dtype"] == "float32"
    assert {t.dtype for t in _tensors(back32).values()} == {torch.float32}
    convert("to-hf", str(ours32), str(back16), "--dtype", "bf16")
    _assert_same_tensors(src, back16)


@pytest.mark.parametrize("sharded", [True, False])
def test_from_hf_reads_pytorch_model_bin(sharded, tmp_path):
    hf = _random_hf("llama", False)
    hf.config.save_pretrained(str(tmp_path / "hf"))
    state = hf.state_dict()
    if not sharded:
        torch.save(state, str(tmp_path / "hf" / "pytorch_model.bin"))
    else:
        names, weight_map = list(state), {}
        for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
            file = f"pytorch_model-0000{i + 1}-of-00002.bin"
            torch.save({k: state[k] for k in part}, str(tmp_path / "hf" / file))
            weight_map.update(dict.fromkeys(part, file))
        (tmp_path / "hf" / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    convert("from-hf", str(tmp_path / "hf"), str(tmp_path / "ours"))
    with torch.no_grad():
        want = hf(TOKENS_BT).logits
    torch.testing.assert_close(_logits(build_consolidated_model(str(tmp_path / "ours"))), want, rtol=1e-5, atol=1e-5)


REFUSALS = {
    "remote_code": ({"auto_map": {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}}, "auto_map"),
    "quantized": ({"quantization_config": {"quant_method": "gptq", "bits": 4}}, "quantization_config"),
    "mixtral_experts": ({"num_local_experts": 8, "num_experts_per_tok": 2}, "num_local_experts"),
    "deepseek_experts": ({"n_routed_experts": 64}, "n_routed_experts"),
    "vision_tower": ({"vision_config": {"hidden_size": 32}}, "vision_config"),
    "conditional_generation": ({"architectures": ["Gemma3ForConditionalGeneration"]}, "ForConditionalGeneration"),
    "unknown_model_type": ({"model_type": "mamba"}, "model_type 'mamba'"),
    "dynamic_rope": ({"rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}}, "rope_type"),
    "tokenizer_larger_than_model": ({}, "vocab_size=300"),
}


@pytest.fixture(scope="module")
def llama_hf_folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("refusals") / "hf"
    _random_hf("llama", False).save_pretrained(str(path))
    return path


@pytest.mark.parametrize("case", REFUSALS)
def test_from_hf_refuses_in_one_line_and_writes_nothing(case, llama_hf_folder, tmp_path):
    change, names_field = REFUSALS[case]
    src = tmp_path / "src"
    shutil.copytree(llama_hf_folder, src)
    (src / "config.json").write_text(json.dumps({**_config(src), **change}))
    if case == "tokenizer_larger_than_model":
        _write_tokenizer(str(src), 400)
    proc = cli("convert", "from-hf", str(src), str(tmp_path / "out" / "ours"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and names_field in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_the_registered_hf_model_types():
    from bigseq.config.train_config import load_components
    from bigseq.models.family import hf_model_types
    load_components(None)
    assert {"gpt2", "llama"} <= set(hf_model_types())
    for argv in (["--help"], ["from-hf", "--help"]):
        proc = cli("convert", *argv)
        assert proc.returncode == 0 and all(t in proc.stdout for t in hf_model_types()), proc.stdout


def test_shard_sizes_read_like_transformers():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("200MB") == 200 * 10**6 and parse_size("2GiB") == 2**31
    assert parse_size(1024) == 1024
    with pytest.raises(BigseqError, match="--max-shard-size"):
        parse_size("big")


def test_exported_config_carries_both_rope_styles():
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}
    out = with_both_rope_styles({"rope_parameters": {**llama3, "rope_theta": 5e5}})
    assert out["rope_theta"] == 5e5 and out["rope_scaling"] == llama3
    legacy = with_both_rope_styles({"rope_theta": 1e6, "rope_scaling": {"type": "linear", "factor": 2.0}})
    assert legacy["rope_parameters"] == {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}


def test_reader_reads_what_safetensors_wrote(tmp_path):
    from safetensors.torch import save_file
    tensors = {"bf16": torch.randn(3, 5).bfloat16(), "fp16": torch.randn(7).half(), "i64": torch.arange(4),
               "flag": torch.tensor([True, False]), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
               "f8": torch.randn(4).to(torch.float8_e4m3fn)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    got = _tensors(tmp_path)
    assert sorted(got) == sorted(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert torch.equal(got[k].reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8)), k
