"""The only package (with checkpoint/) that talks to DeepSpeed."""
