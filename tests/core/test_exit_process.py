"""Processes that joined a process group exit through launch_env.exit_process: same exit codes,
exit handlers run, output flushed, and no interpreter finalization for gloo's threads to race."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import atexit, sys
    from bigseq.distributed import launch_env

    def main():
        launch_env.init_distributed()  # a real one-rank gloo group, as `bigseq train` makes
        atexit.register(lambda: print("exit handler ran", flush=True))
        sys.stdout.write("written, not flushed;")  # exit_process must flush it
        return {body}

    launch_env.run_entry_point(main)
""")


@pytest.mark.parametrize("body,code,stderr", [
    ("0", 0, ""),
    ("2", 2, ""),
    ("sys.exit(75)", 75, ""),  # the preemption exit
    ("sys.exit('stopped: reason')", 1, "stopped: reason"),
    ("1 / 0", 1, "ZeroDivisionError"),
])
def test_exit_code_output_and_exit_handlers(body, code, stderr):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(body=body)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == code, proc.stderr[-2000:]
    assert "written, not flushed;exit handler ran" in proc.stdout
    assert stderr in proc.stderr


def test_without_a_process_group_it_is_a_plain_system_exit():
    from bigseq.distributed import launch_env
    with pytest.raises(SystemExit) as e:
        launch_env.run_entry_point(lambda: 3)
    assert e.value.code == 3
