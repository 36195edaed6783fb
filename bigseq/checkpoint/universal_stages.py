"""Make a ``ds_to_universal`` output loadable by ZeRO stages 1, 2 and 3 alike.

DeepSpeed writes the universal folder in the layout that the loader of the *source*
stage reads, and its stage-1/2 and stage-3 loaders read different layouts:

- model-states file: ``mp_rank_XX_model_states.pt`` (1-2) vs
  ``zero_pp_rank_0_mp_rank_XX_model_states.pt`` (3). A universal load reads only
  their metadata (LR scheduler, counters, client state), which both stages write alike;
- ``zero/optimizer_state.pt``: 1-2 read top-level ``param_groups`` and ``ds_version``;
  3 reads a nested ``optimizer_state_dict`` with ``state[0]['step']`` and ``param_groups``;
- ``zero/<param>/``: 1-2 read ``{'param': tensor, 'cat_dim': 0}`` files and a ``step.pt``;
  3 reads a bare flat tensor or that dict, and no step file.

`make_stage_neutral` writes the union, so ``--zero-stage`` may change on resume.
"""

from __future__ import annotations

import os
import re
import shutil

import torch

NEUTRAL_KEY = "loads_into_any_zero_stage"
_STAGE12_STATES = re.compile(r"^mp_rank_(\d+)_model_states\.pt$")
_STAGE3_STATES = re.compile(r"^zero_pp_rank_0_mp_rank_(\d+)_model_states\.pt$")


def _link_or_copy(src: str, dst: str) -> None:
    if os.path.exists(dst):
        return
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def _link_model_states(folder: str) -> str:
    """Both names for every model-parallel rank's model states; returns one of the files."""
    found = None
    for name in sorted(os.listdir(folder)):
        if m := _STAGE12_STATES.match(name):
            other = f"zero_pp_rank_0_mp_rank_{m.group(1)}_model_states.pt"
        elif m := _STAGE3_STATES.match(name):
            other = f"mp_rank_{m.group(1)}_model_states.pt"
        else:
            continue
        _link_or_copy(os.path.join(folder, name), os.path.join(folder, other))
        found = found or os.path.join(folder, name)
    if found is None:
        raise FileNotFoundError(f"no model-states file in {folder}")
    return found


def _param_folders(zero: str) -> list[str]:
    return [os.path.join(zero, n) for n in sorted(os.listdir(zero)) if os.path.isdir(os.path.join(zero, n))]


def _stage3_to_stage12_params(zero: str, shapes: dict, step) -> None:
    """Bare flat tensors -> {'param': tensor in its shape, 'cat_dim': 0}, plus the step file stages 1-2 read."""
    for param_dir in _param_folders(zero):
        shape = shapes.get(os.path.basename(param_dir))
        for file in sorted(os.listdir(param_dir)):
            path = os.path.join(param_dir, file)
            if file == "step.pt" or not file.endswith(".pt"):
                continue
            state = torch.load(path, map_location="cpu", weights_only=False)
            if torch.is_tensor(state):
                torch.save({"param": state.view(shape) if shape is not None else state, "cat_dim": 0}, path)
        if step is not None and not os.path.exists(os.path.join(param_dir, "step.pt")):
            torch.save(step, os.path.join(param_dir, "step.pt"))


def _stage12_step(zero: str):
    for param_dir in _param_folders(zero):
        path = os.path.join(param_dir, "step.pt")
        if os.path.exists(path):
            return torch.load(path, map_location="cpu", weights_only=False)
    return None


def make_stage_neutral(folder: str, source_stage: int) -> None:
    """Rewrite the universal checkpoint `folder` (written from ZeRO stage `source_stage`) in place."""
    # mapped, not read: a ZeRO-1/2 model-states file holds the whole model's weights, and only
    # ds_version and (for a stage-3 source) the parameter shapes are needed from it
    model_states = torch.load(_link_model_states(folder), map_location="cpu", weights_only=False, mmap=True)
    zero = os.path.join(folder, "zero")
    global_path = os.path.join(zero, "optimizer_state.pt")
    global_state = torch.load(global_path, map_location="cpu", weights_only=False)
    if source_stage == 3:
        nested_state = global_state.get("optimizer_state_dict", {}).get("state", {})
        step = nested_state.get(0, {}).get("step")
        shapes = {name: shape for group in model_states.get("param_shapes", []) for name, shape in group.items()}
        _stage3_to_stage12_params(zero, shapes, step)
        global_state.pop("fp32_flat_groups", None)  # rank 0's shard of the weights: the per-param files hold them
    else:
        step = _stage12_step(zero)
    global_state.setdefault("ds_version", model_states.get("ds_version"))
    # stage 3 reads only the step and the hyper-parameters here; rank 0's moments would be dead weight
    global_state["optimizer_state_dict"] = {"state": {0: {"step": step}}, "param_groups": global_state["param_groups"]}
    torch.save(global_state, global_path)
