"""to-fairseq output loaded and run by the real fairseq (its own venv: benchmarks/peers/fairseq_venv.py).

Skipped where that venv has not been built (`tests/fixtures/fairseq/make_fixtures.py` builds it).
"""

import os
import subprocess

import pytest

from bigseq.cli.convert import main as convert
from tests.fairseq.conftest import ALL_MODELS, FIXTURES, TRANSLATION, data_bin, fixture

VENV = os.path.join(os.path.dirname(FIXTURES), "..", "..", "benchmarks", ".peer-venvs", "fairseq", "bin")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.isfile(os.path.join(VENV, "fairseq-generate")),
                                 reason="no fairseq venv (benchmarks/.peer-venvs/fairseq)")]
ENV = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1"}

LOGITS = r"""
import sys, torch
from fairseq import checkpoint_utils
path, data, batch_file, kind = sys.argv[1:5]
models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides={"data": data})
batch = torch.load(batch_file)
with torch.no_grad():
    if kind == "translation":
        logits = models[0].eval()(batch["src_tokens"], batch["src_lengths"], batch["prev_output_tokens"])[0]
        real = batch["prev_output_tokens"].ne(1)
    else:
        logits = models[0].eval()(batch["src_tokens"])[0]
        real = torch.arange(batch["src_tokens"].shape[1])[None, :] < batch["lengths"][:, None]
print((logits[real] - batch["logits"][real]).abs().max().item())
"""


@pytest.mark.parametrize("name", ALL_MODELS)
def test_fairseq_loads_the_export_strictly_and_gives_its_own_logits(name, tmp_path):
    folder = convert(["from-fairseq", fixture(f"{name}.pt"), str(tmp_path / "m"), "--data", data_bin(name)])
    exported = convert(["to-fairseq", folder, str(tmp_path / "export.pt")])
    kind = "translation" if name in TRANSLATION else "lm"
    result = subprocess.run([os.path.join(VENV, "python"), "-c", LOGITS, exported, data_bin(name),
                             fixture(f"{name}_logits.pt"), kind], capture_output=True, text=True, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 1e-5
