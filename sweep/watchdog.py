"""Nothing an embedded Ray started outlives its driver by more than a few seconds.

When the driver of an embedded Ray is killed (SIGKILL, OOM), Ray's own fate sharing stops the GCS
and the raylet, but its dashboard and runtime-env agents first try to report the raylet's death to
the (dead) GCS and live on for minutes, ignoring SIGTERM. :class:`Watchdog` runs this module as a
small process in its own session. It holds the read end of a pipe whose write end only the driver
has; while the driver lives it notes the processes Ray started and their descendants (pid and start
time, every :data:`POLL_S`), and when the pipe reaches end-of-file (the driver exited, however) it
kills every noted process still alive with the same start time, and their children.

The watchdog starts before Ray does (so a driver killed while Ray is still starting is covered
too): it notes every process the driver starts from then on, and once Ray runs the driver names
Ray's processes (``roots``; from then on only their trees are noted). After a normal
``ray.shutdown()`` the driver closes the pipe itself, and whatever Ray left behind is killed the
same way. Only psutil is imported here; never Ray.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from collections.abc import Iterable

import psutil

POLL_S = 0.5


def _tree(roots: Iterable[int]) -> dict[int, float]:
    """The roots and all their descendants that are alive: pid → start time."""
    seen: dict[int, float] = {}
    for pid in roots:
        try:
            p = psutil.Process(pid)
            procs = [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
        for q in procs:
            with contextlib.suppress(psutil.Error):
                seen[q.pid] = q.create_time()
    return seen


def _kill(noted: dict[int, float]) -> None:
    """SIGKILL every noted process that is still the same process (same start time), and its
    descendants."""
    same = []
    for pid, started in noted.items():
        with contextlib.suppress(psutil.Error):
            if pid != os.getpid() and psutil.Process(pid).create_time() == started:
                same.append(pid)
    victims = []
    for pid in _tree(same):
        with contextlib.suppress(psutil.Error):
            if pid != os.getpid():
                victims.append(psutil.Process(pid))
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(victims, timeout=5)


def _children_except(parent: int, skip: set[int]) -> list[int]:
    """Direct children of ``parent`` other than ``skip``."""
    try:
        return [c.pid for c in psutil.Process(parent).children() if c.pid not in skip]
    except psutil.Error:
        return []


def watch(driver: int, skip: set[int], pipe_fd: int = 0) -> None:
    """Note what the driver starts from now on (its new children and their descendants; after a
    ``roots`` line, only those roots' trees) until ``pipe_fd`` reaches end-of-file (the driver is
    gone or done with Ray), then kill everything noted that still runs."""
    skip = skip | {os.getpid()}
    roots: list[int] | None = None
    noted: dict[int, float] = {}
    buffer = b""
    while True:
        current = roots if roots is not None else _children_except(driver, skip)
        noted.update(_tree([*current, *noted]))
        ready, _, _ = select.select([pipe_fd], [], [], POLL_S)
        if not ready:
            continue
        data = os.read(pipe_fd, 4096)
        if not data:
            break
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            words = line.decode().split()
            if words[:1] == ["roots"]:
                roots = [int(w) for w in words[1:]]
                tree = _tree(roots)
                noted = {p: t for p, t in noted.items() if p in tree} | tree
    _kill(noted)


class Watchdog:
    """The driver's handle: start it before Ray starts, call :meth:`roots` once Ray runs and
    :meth:`close` after ``ray.shutdown()``. If the driver dies first, the end-of-file comes anyway."""

    def __init__(self) -> None:
        skip = {c.pid for c in psutil.Process().children()}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sweep.watchdog", str(os.getpid()), *map(str, sorted(skip))],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the terminal's process group does not stop it
            close_fds=True,
        )
        self.skip = skip | {self.proc.pid}

    def new_children(self) -> list[int]:
        """This process's children started since the watchdog was (Ray's processes)."""
        return [c.pid for c in psutil.Process().children() if c.pid not in self.skip]

    def _send(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()

    def roots(self, pids: list[int]) -> None:
        """Ray's processes: from now on only their trees are watched."""
        self._send("roots " + " ".join(map(str, pids)))

    def close(self) -> None:
        """Ray is shut down: the watchdog kills what it left behind (usually nothing) and exits."""
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


if __name__ == "__main__":
    watch(int(sys.argv[1]), {int(a) for a in sys.argv[2:]})
