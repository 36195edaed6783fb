"""Thin entry points: parse, call, turn BigseqError into one line."""
