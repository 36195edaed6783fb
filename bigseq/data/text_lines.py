"""Line-oriented text files read in byte ranges, so bitext preprocessing can split work over processes.

Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (Python's universal newlines, which
fairseq-preprocess reads with); text is UTF-8 with invalid bytes replaced. A file
is cut into ranges that start right after a ``\\n`` byte, which never occurs inside
a UTF-8 sequence, so every range decodes on its own and the ranges in order give
the lines of the whole file.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator

CHUNK_BYTES = 1 << 24


def count_lines(path: str) -> int:
    """Lines of ``path`` as ``read_lines`` splits them, counted on bytes (no decoding)."""
    count, last, pending_cr = 0, b"", False
    with open(path, "rb") as f:
        while data := f.read(CHUNK_BYTES):
            count += data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
            if pending_cr and data[:1] == b"\n":
                count -= 1  # a \r\n cut by the chunk boundary is one line end
            pending_cr, last = data[-1:] == b"\r", data[-1:]
    return count + (last not in (b"", b"\n", b"\r"))


def byte_ranges(path: str, chunk_bytes: int | None = None) -> list[tuple[int, int]]:
    """Consecutive (start, end) byte ranges of about ``chunk_bytes`` (default CHUNK_BYTES), each starting a line."""
    size, chunk_bytes = os.path.getsize(path), chunk_bytes or CHUNK_BYTES
    ranges, start = [], 0
    with open(path, "rb") as f:
        while start < size:
            f.seek(min(start + chunk_bytes, size))
            f.readline()  # to the next line start
            end = min(f.tell(), size)
            ranges.append((start, end))
            start = end
    return ranges


def read_lines(path: str, start: int = 0, end: int | None = None) -> list[str]:
    """The lines in bytes [start, end) without their line ends."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read() if end is None else f.read(end - start)
    lines = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()  # the text after the last line end
    return lines


def map_ranges(fn: Callable, path: str, workers: int, *args) -> Iterator:
    """``fn(path, start, end, *args)`` over the byte ranges of ``path``, results in file order.

    ``fn`` must be a module-level function (it runs in other processes when ``workers`` > 1).
    """
    ranges = byte_ranges(path)
    if workers <= 1 or len(ranges) <= 1:
        yield from (fn(path, s, e, *args) for s, e in ranges)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, path, s, e, *args) for s, e in ranges]
        for future in futures:
            yield future.result()
