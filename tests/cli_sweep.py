"""`foliotune sweep` as a user runs it: a subprocess in a session of its own, caught mid-sweep."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).absolute().parent.parent


def big_spec(num: int) -> str:
    """An analytic-only spec whose chunks take a while (``num`` × 13 × 4 × 10 points): caught mid-sweep
    on a loaded 2-core machine, with tasks running for fault injection."""
    return f"""
[sweep]
seed = 3
models = ["analytic"]
[fixed]
profile = "epyc-zen3-2s"
copy_engine = "mt-cpu"
[axes]
n_folios = {{ start = 64, stop = 65536, num = {num}, log = true }}
batch_limit_pages = {{ log2_start = 0, log2_stop = 12 }}
copy_threads = [1, 2, 4, 8]
busy_prob = {{ start = 0.0, stop = 0.1, num = 10 }}
"""


def _as_from_a_shell() -> None:
    """In the child before it runs the command: SIGINT as a shell leaves it for a command run in the
    foreground (the default action, not blocked), whatever this test process was left with (an
    ignored or blocked SIGINT is inherited, and a Python started so never raises Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def cli_sweep(
    spec_file: Path,
    out: Path,
    *,
    env: dict[str, str],
    chunk_points: int,
    until_chunks: int,
    timeout_s: float,
    kill_group: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """The sweep of ``spec_file`` into ``out`` on 2 workers, yielded once it has written
    ``until_chunks`` chunk files (failing if it exits or ``timeout_s`` passes first); killed at the
    end if it still runs, with its whole process group (its embedded Ray) when ``kill_group``."""
    cmd = [sys.executable, "-m", "app.cli", "sweep", str(spec_file), "--out", str(out)]
    cmd += ["--workers", "2", "--chunk-points", str(chunk_points), "--no-progress"]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_shell,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while len(list(out.glob("part-*.parquet"))) < until_chunks:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the sweep never started writing"
            time.sleep(0.05)
        yield proc
    finally:
        if kill_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the driver's embedded Ray: its process group
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
