"""--config FILE.yaml: the same names as the flags (dashes or underscores), flat."""

from __future__ import annotations

from typing import Any

import yaml

from bigseq.errors import BigseqError
from bigseq.registry import did_you_mean


def load_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise BigseqError(f"--config {path}: file not found") from None
    except yaml.YAMLError as e:
        raise BigseqError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BigseqError(f"--config {path}: expected a mapping of option: value at the top level")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def check_yaml_keys(yaml_values: dict[str, Any], known: set[str], path: str) -> None:
    for key in yaml_values:
        if key not in known:
            raise BigseqError(f"--config {path}: unknown key '{key}'{did_you_mean(key, known)}")
