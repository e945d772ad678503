"""`foliotune sweep` on its own embedded Ray, as a user runs it (a subprocess, Ray started by the
command itself, the environment as a user has it): loopback only, nothing outlives a killed driver,
Ctrl-C and SIGTERM stop it with one line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.cli_sweep import REPO, big_spec, cli_sweep

# Analytic only, long enough (≈700 chunks) to be caught mid-sweep on a loaded 2-core machine.
BIG = big_spec(400)

LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def _user_env() -> dict[str, str]:
    """The environment of a user's shell: no Ray settings (the command must make its Ray safe)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return env


@contextlib.contextmanager
def _sweep(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A CLI sweep on embedded Ray, returned once it has written chunks; stopped at the end."""
    spec = tmp_path / "big.toml"
    spec.write_text(BIG)
    out = tmp_path / "out"
    with cli_sweep(spec, out, env=_user_env(), chunk_points=300, until_chunks=2, timeout_s=180) as proc:
        yield proc, out


def _tree(pid: int) -> dict[int, float]:
    p = psutil.Process(pid)
    return {q.pid: q.create_time() for q in [p, *p.children(recursive=True)]}


def _alive(noted: dict[int, float]) -> list[str]:
    left = []
    for pid, started in noted.items():
        with contextlib.suppress(psutil.Error):
            q = psutil.Process(pid)
            if q.create_time() == started and q.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {q.name()}")
    return left


def _kill_left(noted: dict[int, float]) -> None:
    for pid, started in noted.items():
        with contextlib.suppress(psutil.Error):
            q = psutil.Process(pid)
            if q.create_time() == started:
                q.kill()


@pytest.mark.slow
def test_embedded_ray_listens_on_loopback_only_and_nothing_outlives_a_killed_driver(tmp_path: Path) -> None:
    with _sweep(tmp_path) as (proc, _out):
        time.sleep(1.0)  # the workers and agents are up while chunks stream in
        noted = _tree(proc.pid)
        listeners = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
        ours = [
            line.split()[3] for line in listeners.splitlines() if any(f"pid={pid}," in line for pid in noted)
        ]
        try:
            assert len(ours) >= 3, listeners  # GCS, raylet, workers at least
            hosts = {addr.rsplit(":", 1)[0].strip("[]") for addr in ours}
            assert hosts <= set(LOOPBACK), ours
            assert not any(addr.endswith(":8265") for addr in ours), "a dashboard was started"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            deadline = time.monotonic() + 5.0
            while _alive(noted) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _alive(noted), f"outlived the driver by 5 s: {_alive(noted)}"
        finally:
            _kill_left(noted)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_ctrl_c_and_sigterm_stop_with_one_line_and_keep_the_chunks(
    tmp_path: Path, sig: int, code: int, word: str
) -> None:
    with _sweep(tmp_path) as (proc, out):
        noted = _tree(proc.pid)
        try:
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == code, err
            last = err.strip().splitlines()[-1]
            assert last == f"foliotune: sweep {word}; finished chunks are kept, rerun to resume", err
            assert "Traceback" not in err and "SIGTERM received" not in err, err
            deadline = time.monotonic() + 5.0
            while _alive(noted) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not _alive(noted), _alive(noted)
        finally:
            _kill_left(noted)
        from sweep.results import sweep_status

        st = sweep_status(out)
        assert st.chunks_done >= 2 and not st.complete and st.chunks_damaged == 0
