"""fairseq state-dict keys <-> bigseq parameter names, for ``transformer`` and ``transformer_lm``.

``upgrade_legacy`` applies what fairseq's ``upgrade_state_dict_named`` does when it loads an old
checkpoint (``decoder.embed_out``, ``layers.N.layer_norms.{0,1,2}``, the old sinusoidal buffers) and
reports whether each stack predates its final LayerNorm (``*.version`` < 2 for the encoder, <= 2 for
the decoder; fairseq then drops that norm). The renames are the ones model.py's docstrings list; the
keys fairseq keeps but bigseq has no tensor for (``*.version``, ``embed_positions._float_tensor``,
the tied copies of an embedding) are dropped on import and written back on export.
"""

from __future__ import annotations

import re

import torch

# per-layer module names: fairseq -> bigseq (longest first: self_attn_layer_norm before self_attn)
_LAYER_RENAMES = [("self_attn_layer_norm", "attn_norm"), ("encoder_attn_layer_norm", "cross_attn_norm"),
                  ("self_attn", "attn"), ("encoder_attn", "cross_attn"), ("fc1", "ffn.up_proj"),
                  ("fc2", "ffn.down_proj"), ("final_layer_norm", "ffn_norm")]
_LAYER_KEY = re.compile(r"^(?P<stack>encoder|decoder)\.layers\.(?P<i>\d+)\.(?P<module>[a-z_0-9]+)\.(?P<rest>.+)$")
_OLD_LAYER_NORMS = {"encoder": {"0": "self_attn_layer_norm", "1": "final_layer_norm"},
                    "decoder": {"0": "self_attn_layer_norm", "1": "encoder_attn_layer_norm", "2": "final_layer_norm"}}
_DROPPED_SUFFIXES = (".version", ".embed_positions._float_tensor", ".embed_positions.weights")


def stack_version(state: dict[str, torch.Tensor], stack: str) -> float:
    """fairseq's ``{stack}.version`` buffer (1 when absent, as fairseq reads it)."""
    version = state.get(f"{stack}.version")
    return float(version.reshape(-1)[0]) if version is not None else 1.0


def has_final_norm_version(state: dict[str, torch.Tensor], stack: str) -> bool:
    """False when fairseq would drop the stack's final LayerNorm for the checkpoint's age."""
    version = stack_version(state, stack)
    return version >= 2 if stack == "encoder" else version > 2


def upgrade_legacy(state: dict[str, torch.Tensor], *, tied_output: bool) -> dict[str, torch.Tensor]:
    """fairseq's own upgrades of old keys, on a copy (tensors are not copied)."""
    out = dict(state)
    for key in list(out):
        m = re.match(r"^(encoder|decoder)\.layers\.(\d+)\.layer_norms\.(\d)\.(weight|bias)$", key)
        if m and m.group(3) in _OLD_LAYER_NORMS[m.group(1)]:
            new = _OLD_LAYER_NORMS[m.group(1)][m.group(3)]
            out[f"{m.group(1)}.layers.{m.group(2)}.{new}.{m.group(4)}"] = out.pop(key)
    if "decoder.output_projection.weight" not in out:
        old = "decoder.embed_tokens.weight" if tied_output else "decoder.embed_out"
        if old in out:
            out["decoder.output_projection.weight"] = out[old] if tied_output else out.pop(old)
    return out


def _rename_layer_key(key: str, renames: list[tuple[str, str]]) -> str:
    m = _LAYER_KEY.match(key)
    if m is None:
        return key
    module = dict(renames).get(m.group("module"), m.group("module"))
    return f"{m.group('stack')}.layers.{m.group('i')}.{module}.{m.group('rest')}"


def is_dropped(key: str) -> bool:
    return key.endswith(_DROPPED_SUFFIXES)


# --- transformer (encoder-decoder) ---------------------------------------------------------------

def transformer_to_bigseq(key: str) -> str:
    key = _rename_layer_key(key, _LAYER_RENAMES)
    return re.sub(r"^(encoder|decoder)\.layer_norm\.", r"\1.final_norm.", key)


def transformer_to_fairseq(key: str) -> str:
    m = _LAYER_KEY.match(key.replace(".ffn.up_proj.", ".ffn_up_proj.").replace(".ffn.down_proj.", ".ffn_down_proj."))
    if m is not None:
        back = {ours.replace(".", "_"): theirs for theirs, ours in _LAYER_RENAMES}
        module = back.get(m.group("module"), m.group("module"))
        return f"{m.group('stack')}.layers.{m.group('i')}.{module}.{m.group('rest')}"
    return re.sub(r"^(encoder|decoder)\.final_norm\.", r"\1.layer_norm.", key)


# --- transformer_lm (decoder only: fairseq keys all start with decoder.) ------------------------

_LM_TOP = [("decoder.embed_tokens.", "embed.tokens."), ("decoder.embed_positions.", "embed.positions."),
           ("decoder.layernorm_embedding.", "embed.layernorm."), ("decoder.layer_norm.", "final_norm."),
           ("decoder.output_projection.", "output_projection.")]


def lm_to_bigseq(key: str) -> str:
    renamed = _rename_layer_key(key, _LAYER_RENAMES)
    if renamed.startswith("decoder.layers."):
        return renamed.removeprefix("decoder.")
    for theirs, ours in _LM_TOP:
        if key.startswith(theirs):
            return ours + key.removeprefix(theirs)
    return key


def lm_to_fairseq(key: str) -> str:
    if key.startswith("layers."):
        return transformer_to_fairseq("decoder." + key)
    for theirs, ours in _LM_TOP:
        if key.startswith(ours):
            return theirs + key.removeprefix(ours)
    return key
