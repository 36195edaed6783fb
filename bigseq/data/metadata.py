"""metadata.json of a bigseq data directory: vocabulary size, special ids, per-split counts.

Kept apart from preprocessing so that loading a data dir does not import HF ``datasets``.
"""

from __future__ import annotations

import json
import os

from bigseq.atomic_files import write_json
from bigseq.errors import BigseqError

METADATA_FILE = "metadata.json"
METADATA_VERSION = 1


def read_metadata(data_dir: str) -> dict:
    path = os.path.join(data_dir, METADATA_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise BigseqError(f"{path}: not valid JSON ({e}); "
                          f"re-run `bigseq preprocess ... --destdir {data_dir}`") from None
    if not isinstance(meta, dict):
        raise BigseqError(f"{path}: expected a JSON object; re-run `bigseq preprocess ... --destdir {data_dir}`")
    return meta


def write_metadata(data_dir: str, metadata: dict) -> None:
    """Write atomically: a data dir counts as complete once its metadata.json exists."""
    write_json(os.path.join(data_dir, METADATA_FILE), metadata, indent=2, sort_keys=False)
