"""A save dir's files: the `latest` pointer, each tag's bigseq_meta.json, and resolving a checkpoint path."""

from __future__ import annotations

import json
import os
import tempfile

from bigseq.errors import BigseqError

META_FILE = "bigseq_meta.json"


def read_latest(save_dir: str) -> str | None:
    """Tag named by save_dir/latest, or None when there is no complete checkpoint."""
    path = os.path.join(save_dir, "latest")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        tag = f.read().strip()
    if not os.path.exists(os.path.join(save_dir, tag, META_FILE)):
        raise BigseqError(f"{path} names '{tag}', which is incomplete or missing; "
                          f"point 'latest' at a complete checkpoint folder or use a fresh --save-dir")
    return tag


def read_meta(ckpt_dir: str) -> dict:
    path = os.path.join(ckpt_dir, META_FILE)
    if not os.path.exists(path):
        raise BigseqError(f"{ckpt_dir} is not a complete bigseq checkpoint (no {META_FILE}); "
                          f"pass a save dir or one of its checkpoint_* folders")
    with open(path) as f:
        return json.load(f)


def tensor_parallel_size(meta: dict) -> int:
    """--tensor-parallel-size of the run that saved it (1 for checkpoints from before the flag)."""
    return int(meta["cfg"].get("distributed", {}).get("tensor_parallel_size", 1))


def resolve_checkpoint(path: str) -> tuple[str, str]:
    """A save dir or a tag folder -> (save_dir, tag)."""
    path = path.rstrip("/")
    if not os.path.exists(path):
        raise BigseqError(f"checkpoint {path} not found; pass --path SAVE_DIR (or SAVE_DIR/checkpoint_N)")
    if os.path.exists(os.path.join(path, META_FILE)):
        return os.path.dirname(path) or ".", os.path.basename(path)
    tag = read_latest(path)
    if tag is None:
        raise BigseqError(f"{path} holds no checkpoint (no 'latest' file); train first or pass a checkpoint folder")
    return path, tag


def check_writable(save_dir: str) -> None:
    try:
        os.makedirs(save_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=save_dir, prefix=".write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise BigseqError(f"--save-dir {save_dir} is not writable ({e.strerror}); choose another folder "
                          f"or pass --no-save") from None
