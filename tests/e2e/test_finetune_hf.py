"""--finetune-from-model HF_DIR without --arch: the architecture and weights come from the transformers folder,
whose embedding may have more rows than the data's tokenizer has ids (a padded vocabulary)."""

import json
import os

import pytest
import torch

from bigseq.tasks.language_modeling import LanguageModelingConfig, LanguageModelingTask

from .runner import BIN, TINY, run, train_losses

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
    return model


def _train(data: str, args: list[str], log_file: str | None = None):
    """`bigseq train` with the tiny settings but no --arch: the architecture comes from the folder."""
    tiny = [a for a in TINY if a not in ("--arch", "llama_tiny")]
    return run([os.path.join(BIN, "bigseq"), "train", data, *tiny, "--max-update", "1", "--no-save", *args,
                *(["--log-file", log_file] if log_file else [])], timeout=300)


def _first_batch(data: str):
    task = LanguageModelingTask(LanguageModelingConfig(data=data, tokens_per_sample=int(TINY[TINY.index(
        "--tokens-per-sample") + 1])))
    itr = task.get_batch_iterator("train", batch_size=int(TINY[TINY.index("--batch-size") + 1]), max_tokens=None,
                                  seed=1, dp_rank=0, dp_size=1)
    return next(iter(itr.next_epoch_itr()))[0], task


def test_finetune_from_an_hf_folder_starts_from_its_weights(tiny_data, tmp_path):
    batch, task = _first_batch(tiny_data)
    hf_dir = str(tmp_path / "qwen2")
    hf = _qwen2_folder(hf_dir, task.vocab_size + PADDED_ROWS)
    log = str(tmp_path / "log.jsonl")
    proc = _train(tiny_data, ["--finetune-from-model", hf_dir], log)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model hf:qwen2:" in proc.stdout
    with torch.no_grad():
        logits = hf(batch.tokens).logits.double()
    keep = batch.targets != task.pad_idx
    want = torch.nn.functional.cross_entropy(logits[keep], batch.targets[keep], reduction="mean").item()
    assert train_losses(log)[1] == pytest.approx(want, abs=1e-4)


def test_a_model_vocabulary_smaller_than_the_data_is_one_line(tiny_data, tmp_path):
    _, task = _first_batch(tiny_data)
    hf_dir = str(tmp_path / "small")
    _qwen2_folder(hf_dir, task.vocab_size - 10)
    proc = _train(tiny_data, ["--finetune-from-model", hf_dir])
    assert proc.returncode != 0
    assert "smaller than the task's vocabulary" in proc.stderr, proc.stderr[-2000:]
    with open(os.path.join(hf_dir, "config.json")) as f:
        assert json.load(f)["vocab_size"] == task.vocab_size - 10


def test_a_broken_config_json_is_one_line(tiny_data, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text("{oops")
    proc = _train(tiny_data, ["--finetune-from-model", str(folder)])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "config.json is not valid JSON" in proc.stderr.strip().splitlines()[-1]
