"""--finetune-from-model HF_DIR without --arch: the architecture and weights come from the transformers folder,
whose embedding may have more rows than the data's tokenizer has ids (a padded vocabulary)."""

import json
import os

import pytest
import torch

from bigseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

from .runner import BIN, TINY, TRAIN_PY, cli, free_port, run, train_losses

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow
PADDED_ROWS = 20


def _qwen2_folder(path: str, vocab_size: int):
    # transformers' model classes import triton: touch them only inside tests, never at collection (the kernel
    # tests set TRITON_INTERPRET while collecting, and Triton reads it when its modules are first imported)
    config = transformers.Qwen2Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=False)
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # biases and norms matter too
    model.save_pretrained(path, max_shard_size="40KB")
    with open(os.path.join(path, "chat_template.jinja"), "w") as f:
        f.write("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    return model


def _train(data: str, args: list[str], log_file: str | None = None):
    """`bigseq train` with the tiny settings but no --arch: the architecture comes from the folder."""
    tiny = [a for a in TINY if a not in ("--arch", "llama_tiny")]
    return run([os.path.join(BIN, "bigseq"), "train", data, *tiny, "--max-update", "1", "--no-save", *args,
                *(["--log-file", log_file] if log_file else [])], timeout=300)


def _first_batch(data: str, dp_rank: int = 0, dp_size: int = 1):
    task = LanguageModelingTask(LanguageModelingConfig(data=data, tokens_per_sample=int(TINY[TINY.index(
        "--tokens-per-sample") + 1])))
    itr = task.get_batch_iterator("train", batch_size=int(TINY[TINY.index("--batch-size") + 1]), max_tokens=None,
                                  seed=1, dp_rank=dp_rank, dp_size=dp_size)
    return next(iter(itr.next_epoch_itr()))[0], task


def _loss_sum(hf, batch, pad_idx: int) -> tuple[float, int]:
    """(summed token cross-entropy, tokens) of an HF model on a batch, in float64."""
    with torch.no_grad():
        logits = hf(batch.tokens).logits.double()
    keep = batch.targets != pad_idx
    loss = torch.nn.functional.cross_entropy(logits[keep], batch.targets[keep], reduction="sum").item()
    return loss, int(keep.sum())


def test_finetune_from_an_hf_folder_starts_from_its_weights(tiny_data, tmp_path):
    batch, task = _first_batch(tiny_data)
    hf_dir = str(tmp_path / "qwen2")
    hf = _qwen2_folder(hf_dir, task.vocab_size + PADDED_ROWS)
    log = str(tmp_path / "log.jsonl")
    proc = _train(tiny_data, ["--finetune-from-model", hf_dir], log)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model hf:qwen2:" in proc.stdout
    loss, tokens = _loss_sum(hf, batch, task.pad_idx)
    assert train_losses(log)[1] == pytest.approx(loss / tokens, abs=1e-4)


@pytest.mark.launcher
def test_zero3_on_two_ranks_starts_from_the_hf_weights_and_exports_back(tiny_data, tmp_path):
    """Rank 0 reads the folder group by group and ZeRO-3 scatters it; the first loss is the HF model's on both
    ranks' batches; to-hf of the saved checkpoint is a qwen2 folder transformers loads, one update further on."""
    batches = [_first_batch(tiny_data, rank, 2) for rank in (0, 1)]
    task = batches[0][1]
    hf_dir, save, out = str(tmp_path / "qwen2"), str(tmp_path / "save"), str(tmp_path / "exported")
    hf = _qwen2_folder(hf_dir, task.vocab_size + PADDED_ROWS)
    log = str(tmp_path / "log.jsonl")
    tiny = [a for a in TINY if a not in ("--arch", "llama_tiny")]
    proc = run([os.path.join(BIN, "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
                TRAIN_PY, tiny_data,
                *tiny, "--max-update", "1", "--zero-stage", "3", "--finetune-from-model", hf_dir, "--save-dir", save,
                "--log-file", log], timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "read one group at a time by rank 0 and scattered (ZeRO-3)" in proc.stdout, proc.stdout[-2000:]
    sums = [_loss_sum(hf, batch, task.pad_idx) for batch, _ in batches]
    assert train_losses(log)[1] == pytest.approx(sum(s for s, _ in sums) / sum(n for _, n in sums), abs=1e-4)

    cli("convert", "to-hf", save, out, check=True)
    for name in ("chat_template.jinja", "generation_config.json"):  # the source folder's, byte for byte
        with open(os.path.join(hf_dir, name), "rb") as a, open(os.path.join(out, name), "rb") as b:
            assert a.read() == b.read(), name
    exported = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert exported.config.model_type == "qwen2" and exported.config.vocab_size == task.vocab_size + PADDED_ROWS
    before = hf.state_dict()
    after = exported.state_dict()
    assert after.keys() == before.keys()
    assert all(not torch.equal(after[k], t) for k, t in before.items() if k.endswith("q_proj.weight"))
    # one update on these batches lowers their loss: the update reached every rank's shard and the export
    assert _loss_sum(exported, batches[0][0], task.pad_idx)[0] < sums[0][0]


def test_a_model_vocabulary_smaller_than_the_data_is_one_line(tiny_data, tmp_path):
    _, task = _first_batch(tiny_data)
    hf_dir = str(tmp_path / "small")
    _qwen2_folder(hf_dir, task.vocab_size - 10)
    proc = _train(tiny_data, ["--finetune-from-model", hf_dir])
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "smaller than the task's vocabulary" in last and str(task.vocab_size - 10) in last, proc.stderr[-2000:]
    with open(os.path.join(hf_dir, "config.json")) as f:
        assert json.load(f)["vocab_size"] == task.vocab_size - 10


def test_a_broken_config_json_is_one_line(tiny_data, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{oops")
    proc = _train(tiny_data, ["--finetune-from-model", str(folder)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "config.json is not valid JSON" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.launcher
def test_zero3_a_truncated_shard_stops_every_rank_in_one_line(tiny_data, tmp_path):
    """Only rank 0 reads: its error must reach the other rank (waiting in the gathers) instead of hanging it."""
    _, task = _first_batch(tiny_data)
    hf_dir = str(tmp_path / "qwen2")
    _qwen2_folder(hf_dir, task.vocab_size)
    with open(os.path.join(hf_dir, "model.safetensors.index.json")) as f:
        last_shard = sorted(set(json.load(f)["weight_map"].values()))[-1]
    path = os.path.join(hf_dir, last_shard)
    os.truncate(path, os.path.getsize(path) - 64)
    tiny = [a for a in TINY if a not in ("--arch", "llama_tiny")]
    proc = run([os.path.join(BIN, "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), TRAIN_PY,
                tiny_data, *tiny, "--max-update", "1", "--zero-stage", "3", "--no-save", "--finetune-from-model",
                hf_dir], timeout=300)
    assert proc.returncode != 0
    assert "the file is truncated" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
