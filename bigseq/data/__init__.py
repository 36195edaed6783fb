"""Data pipeline: tokenizer, mmap .bin/.idx datasets, preprocessing, token blocks, batch iterators."""
