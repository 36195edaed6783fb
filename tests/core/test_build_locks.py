"""A JIT-build lock nobody will release stops the run with a line saying so, instead of a silent hang; every run
builds with the same ninja."""

import os
import sys
import time

import pytest

from bigseq.distributed.build_locks import STALE_AFTER_S, check_build_locks, pin_ninja
from bigseq.errors import BigseqError


@pytest.fixture
def op_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    folder = tmp_path / "deepspeed_shm_comm"
    folder.mkdir()
    (folder / "shm.o").write_bytes(b"\0")
    return folder


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_lock_left_by_a_killed_build_is_refused(op_folder):
    lock = op_folder / "lock"
    lock.touch()
    for path in (lock, op_folder / "shm.o"):
        _age(path, STALE_AFTER_S + 120)
    with pytest.raises(BigseqError) as err:
        check_build_locks()
    message = str(err.value)
    assert f"rm {lock}" in message and "'deepspeed_shm_comm'" in message and "12 min ago" in message


def test_build_in_progress_is_left_alone(op_folder):
    lock = op_folder / "lock"
    lock.touch()
    _age(lock, STALE_AFTER_S + 120)  # an old lock, but the compiler wrote an object file just now
    check_build_locks()
    _age(op_folder / "shm.o", STALE_AFTER_S + 120)
    lock.touch()  # a build that has just started
    check_build_locks()


def test_no_lock_no_extensions_folder(op_folder, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("a file beside the op folders")
    _age(op_folder / "shm.o", STALE_AFTER_S + 120)  # an old build that finished: no lock
    check_build_locks()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "missing"))
    check_build_locks()


def test_the_ninja_beside_the_interpreter_goes_first(tmp_path, monkeypatch):
    here = str(tmp_path / "bin")
    os.mkdir(here)
    monkeypatch.setattr(sys, "executable", os.path.join(here, "python"))
    env = {"PATH": "/usr/bin:/bin"}
    pin_ninja(env)
    assert env["PATH"] == "/usr/bin:/bin"  # no ninja there: PATH's own stays
    (tmp_path / "bin" / "ninja").touch()
    pin_ninja(env)
    assert env["PATH"] == f"{here}:/usr/bin:/bin"
    pin_ninja(env)
    assert env["PATH"] == f"{here}:/usr/bin:/bin"  # once
