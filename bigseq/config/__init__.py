"""Configs: dataclasses -> fairseq-style flags (flags.py), field kinds (fields.py: nested sections,
runtime fields), YAML files (yaml_file.py), the training sections (sections.py) and parsing a whole
training config (train_config.py)."""

from bigseq.config.fields import architecture_values, runtime, runtime_fields, section
from bigseq.config.flags import FlagParser, add_dataclass_args, build_config, field_docs, flag_name, main_argv
from bigseq.config.yaml_file import check_yaml_keys, load_yaml

__all__ = ["FlagParser", "add_dataclass_args", "architecture_values", "build_config", "check_yaml_keys",
           "field_docs", "flag_name", "load_yaml", "main_argv", "runtime", "runtime_fields", "section"]
