"""Universal checkpoints: resume a ZeRO run on another world size, ZeRO stage (any of 1-3)
or pipeline-parallel size (pipeline runs use ZeRO-1; parameters are stored under the plain model's names).

`convert_to_universal` wraps DeepSpeed's ``ds_to_universal`` (parameters and
optimizer moments as whole, unpartitioned fragments) and adds bigseq's meta, so
``SAVE/TAG_universal`` is a complete bigseq checkpoint; ``SAVE/latest_universal``
names it. A run resumes from it when ``--universal-checkpoint`` is given, when
``latest`` names a ``*_universal`` tag, or when ``latest_universal`` is the
conversion of the tag ``latest`` names (converted after the last save).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

from bigseq.atomic_files import atomic_write_text, write_json
from bigseq.checkpoint import files, pipeline, universal_stages
from bigseq.errors import BigseqError

SUFFIX = "_universal"
LATEST_FILE = "latest_universal"


def _read_pointer(save_dir: str, name: str) -> str | None:
    path = os.path.join(save_dir, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


_PROGRESS = re.compile(rb"^(\*\*\* |\s*\d+%\|)")  # ds_to_universal's step headers and tqdm bars


def _run_showing_progress(cmd: list[str]) -> tuple[int, str]:
    """Run cmd, passing its step headers and progress bars on to stderr as they come (a large model takes
    minutes) but not its warnings or traceback. Returns (exit code, the output's last 64 KiB)."""
    tail, pending, last_shown = b"", b"", b"\n"
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        while chunk := proc.stdout.read1(65536):
            tail = (tail + chunk)[-65536:]
            pending += chunk
            # tqdm redraws a bar with "\r", so a piece of output ends at either
            *pieces, pending = re.split(rb"(?<=[\r\n])", pending)
            shown = b"".join(piece for piece in pieces if _PROGRESS.match(piece))
            if shown:
                sys.stderr.buffer.write(shown)
                sys.stderr.flush()
                last_shown = shown
    if not last_shown.endswith(b"\n"):  # a bar cut short: what follows starts on a line of its own
        sys.stderr.write("\n")
    return proc.returncode, tail.decode(errors="replace")


def convert_to_universal(path: str, *, workers: int = 1) -> tuple[str, str]:
    """A ZeRO checkpoint (save dir or tag folder) -> (save_dir, universal tag). Atomic: temp folder, then rename."""
    save_dir, tag = files.resolve_checkpoint(path)
    if tag.endswith(SUFFIX):
        raise BigseqError(f"{os.path.join(save_dir, tag)} is already a universal checkpoint; resume from it directly")
    meta = files.read_meta(os.path.join(save_dir, tag))
    if meta.get("zero_stage", 0) == 0 and pipeline.pipeline_size(meta) > 1:
        raise BigseqError(f"{os.path.join(save_dir, tag)} is a pipeline checkpoint saved with ZeRO stage 0; "
                          f"universal conversion needs the ZeRO optimizer layout: train with --zero-stage 1 "
                          f"to change --pipeline-parallel-size later")
    if meta.get("zero_stage", 0) == 0:
        raise BigseqError(f"{os.path.join(save_dir, tag)} was saved with ZeRO stage 0 (whole weights and optimizer "
                          f"on every rank); universal conversion needs ZeRO 1-3. It resumes on any world size as is")
    out_tag = tag + SUFFIX
    final = os.path.join(save_dir, out_tag)
    staging = tempfile.mkdtemp(dir=save_dir, prefix=".convert-")
    try:
        out = os.path.join(staging, out_tag)  # ds_to_universal writes its latest_universal next to it: in staging
        cmd = [sys.executable, "-m", "deepspeed.checkpoint.ds_to_universal", "--input_folder",
               os.path.join(save_dir, tag), "--output_folder", out, "--num_extract_workers", str(workers),
               "--num_merge_workers", str(workers)]
        returncode, output = _run_showing_progress(cmd)
        if returncode != 0:
            last = (output.strip().splitlines() or ["no output"])[-1]
            raise BigseqError(f"ds_to_universal failed on {os.path.join(save_dir, tag)} ({last}); "
                              f"check that the checkpoint is complete (bigseq saves carry the universal info)")
        if pipeline.pipeline_size(meta) > 1:
            pipeline.rename_to_plain(out, meta, os.path.join(save_dir, tag))
        universal_stages.make_stage_neutral(out, meta["zero_stage"])
        write_json(os.path.join(out, files.META_FILE), {**meta, "tag": out_tag, "universal": True,
                                                               "source_tag": tag, pipeline.PLAIN_NAMES_KEY: True,
                                                               universal_stages.NEUTRAL_KEY: True})
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(out, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(os.path.join(save_dir, LATEST_FILE), out_tag)
    return save_dir, out_tag


def resume_tag(save_dir: str, force_universal: bool = False) -> tuple[str, bool] | None:
    """(tag to resume from, whether it is universal), or None when save_dir holds no checkpoint."""
    latest = files.read_latest(save_dir) if os.path.isdir(save_dir) else None
    universal = _read_pointer(save_dir, LATEST_FILE) if os.path.isdir(save_dir) else None
    if universal is not None and not os.path.exists(os.path.join(save_dir, universal, files.META_FILE)):
        universal = None
    if force_universal:
        if latest is not None and latest.endswith(SUFFIX):
            return latest, True
        if universal is None:
            raise BigseqError(f"--universal-checkpoint: {save_dir} has no universal checkpoint; make one with "
                              f"`bigseq convert universal {save_dir}`")
        return universal, True
    if latest is None:
        return None
    if latest.endswith(SUFFIX):
        return latest, True
    if universal is not None and files.read_meta(os.path.join(save_dir, universal)).get("source_tag") == latest:
        return universal, True
    return latest, False


def loads_universal(cfg) -> bool:
    """Whether this run will resume from a universal checkpoint (decided before the engine is built)."""
    found = resume_tag(cfg.checkpoint.save_dir, cfg.distributed.universal_checkpoint)
    return found is not None and found[1]
