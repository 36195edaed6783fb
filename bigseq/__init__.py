"""bigseq: fairseq-style sequence modeling trained inside DeepSpeed."""

__version__ = "0.1.0"
