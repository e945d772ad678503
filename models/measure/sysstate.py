"""System settings ``foliotune measure --kernel`` changes, each restored on exit (error and signals too).

:class:`SystemState` records every write with the value it replaced and undoes them in reverse order
in ``__exit__``; SIGINT and SIGTERM raise inside the block so the undo runs. It also mounts tracefs
(if it was not mounted) and makes a private instance ``instances/foliotune-<pid>``, and it knows how
to take a memory block offline and back online (``/sys/devices/system/memory/memoryN/state``).

References
----------
Documentation/admin-guide/mm/memory-hotplug.rst (Linux 6.18): ``state`` accepts ``offline``,
``online``, ``online_kernel``, ``online_movable``; ``valid_zones`` names the zone of an online block.
Documentation/trace/ftrace.rst: ``instances/`` directories are independent ring buffers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

TRACEFS = Path("/sys/kernel/tracing")
MEMORY = Path("/sys/devices/system/memory")
SayFn = Callable[[str], None]


class Unavailable(RuntimeError):
    """What ``--kernel`` needs is missing here (root, tracefs, hotplug): one line saying which and why."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class SystemState:
    """Undo log of the settings changed; use as a context manager (restores on any exit)."""

    def __init__(self, say: SayFn | None = None) -> None:
        self.say = say or (lambda _msg: None)
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._old_handlers: dict[int, Any] = {}
        self.restored: list[str] = []
        self._originals: set[Path] = set()
        self.errors: list[str] = []

    def __enter__(self) -> SystemState:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, _interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        # Signals arriving during the undo must not cut it short.
        masked = bool(self._old_handlers)
        if masked:
            for sig in self._old_handlers:
                signal.signal(sig, signal.SIG_IGN)
        try:
            self.restore()
        finally:
            for sig, h in self._old_handlers.items():
                signal.signal(sig, h)
            self._old_handlers.clear()

    def push(self, what: str, undo: Callable[[], None]) -> None:
        """Register an undo action (run in reverse order of registration)."""
        self._undo.append((what, undo))

    def drop_last(self) -> None:
        """Forget the last undo action (its change did not happen)."""
        self._undo.pop()

    def restore(self) -> None:
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
                self.restored.append(what)
            except Exception as exc:  # noqa: BLE001 - every undo is attempted; errors are reported
                self.errors.append(f"could not restore {what}: {exc}")

    # ---- plain sysfs values --------------------------------------------------------------------
    def set_value(self, path: Path, value: str) -> None:
        """Write ``value`` to ``path``; the value shown there before is written back on exit."""
        old = read_choice(path)
        if old == value:
            return
        self.say(f"setting {path} = {value} (was {old})")
        if path not in self._originals:  # the first undo of a path brings back its original value
            self._originals.add(path)
            self.push(f"{path} = {old}", lambda: _write(path, old))
        path.write_text(value)

    # ---- tracefs ---------------------------------------------------------------------------------
    def tracefs_instance(self) -> Path:
        """A private tracefs instance (mounting tracefs first if needed); removed on exit."""
        if not (TRACEFS / "instances").is_dir():
            self.say(f"mounting tracefs on {TRACEFS} (unmounted at the end)")
            r = subprocess.run(
                ["mount", "-t", "tracefs", "nodev", str(TRACEFS)], capture_output=True, text=True
            )
            if r.returncode != 0:
                raise Unavailable(
                    f"tracefs: cannot mount it on {TRACEFS} ({r.stderr.strip() or r.returncode})"
                )
            self.push(f"tracefs unmounted from {TRACEFS}", lambda: _umount(TRACEFS))
        inst = TRACEFS / "instances" / f"foliotune-{os.getpid()}"
        k = 1
        while inst.exists():  # a second instance of the same process (tests record alongside)
            k += 1
            inst = TRACEFS / "instances" / f"foliotune-{os.getpid()}-{k}"
        self.say(f"creating tracefs instance {inst} (removed at the end)")
        try:
            inst.mkdir()
        except OSError as exc:
            raise Unavailable(f"tracefs: cannot create instance {inst} ({exc.strerror})") from None
        self.push(f"tracefs instance {inst} removed", lambda: _remove_instance(inst))
        return inst

    # ---- memory blocks ---------------------------------------------------------------------------
    def keep_block(self, block: Path) -> None:
        """Register that ``block`` goes back to its current state and zone on exit."""
        state = read_choice(block / "state")
        zone = (block / "valid_zones").read_text().split()[0] if state == "online" else ""
        self.keep_block_state(block, state, zone)

    def keep_block_state(self, block: Path, state: str, zone: str) -> None:
        """Register that ``block`` goes back to ``state`` (and ``zone`` when online) on exit."""
        self.push(f"{block.name} {state} ({zone or 'no zone'})", lambda: restore_block(block, state, zone))


def read_choice(path: Path) -> str:
    """The value of a sysfs file; for ``[a] b c`` choice lists, the bracketed one."""
    text = path.read_text().strip()
    if "[" in text:
        return text.split("[", 1)[1].split("]", 1)[0]
    return text


def _umount(path: Path) -> None:
    for _ in range(20):
        r = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise OSError(f"umount {path}: {r.stderr.strip()}")


def _remove_instance(inst: Path) -> None:
    with contextlib.suppress(OSError):
        (inst / "tracing_on").write_text("0")
    for _ in range(20):
        try:
            inst.rmdir()
            return
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            time.sleep(0.1)
    inst.rmdir()


def set_block_state(block: Path, state: str, tries: int = 1, wait_s: float = 0.2) -> None:
    """Write ``state`` to the block (``offline``, ``online_movable``, ...); retry transient EBUSY/EAGAIN."""
    for i in range(tries):
        try:
            (block / "state").write_text(state)
            return
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.EAGAIN, errno.EINTR) or i == tries - 1:
                raise
            time.sleep(wait_s)


def restore_block(block: Path, state: str, zone: str) -> None:
    """Bring ``block`` back to ``state`` (``online`` in ``zone``, or ``offline``); never leaves it half."""
    now = read_choice(block / "state")
    now_zone = (block / "valid_zones").read_text().split()[0] if now == "online" else ""
    if now == state and now_zone == zone:
        return
    if now == "online" and state == "online":  # wrong zone: it has to go offline first
        set_block_state(block, "offline", tries=50)
        now = "offline"
    if state == "online":
        set_block_state(block, "online_movable" if zone == "Movable" else "online_kernel", tries=10)
    elif now == "online":
        set_block_state(block, "offline", tries=50)


def check_root() -> None:
    if os.geteuid() != 0:
        raise Unavailable(
            "root: --kernel writes sysfs and tracefs, which needs root (run as root or with sudo)"
        )


def _write(path: Path, value: str) -> None:
    path.write_text(value)
