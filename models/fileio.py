"""Output files written all or nothing: the one temp-and-rename helper of foliotune.

:func:`atomic_write` writes to a hidden temporary file beside the target (``.tmp-PID-NAME``),
flushes and fsyncs it, optionally checks it, and renames it over the target, so a reader sees the
old file or the new one, never half of one. It refuses a target that exists and is not a regular
file (a device such as ``/dev/full``, a folder, a FIFO, a symbolic link: renaming over those would
replace the node itself, not write to it), and on any failure (a full or read-only disk, a check
that refuses the content, an interrupt) it removes its temporary file and raises; an ``OSError``
becomes one :class:`OutputFileError` line naming the target.

``models/``, ``sweep/`` and ``app/`` all use it; it imports nothing from them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

from models.errors import UserError

#: Prefix of temporary files (hidden: Arrow's dataset discovery and globs skip them).
TMP_PREFIX = ".tmp-"


class OutputFileError(UserError):
    """A target that cannot be written; the one-line message names it. ``errno`` is the OS error
    number when an ``OSError`` caused it, else ``None``."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


def os_message(exc: OSError) -> str:
    """A short, stable description of an OS error (no errno number, no file name)."""
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno == errno.EFBIG:
        return "file too large for this file system or process limit"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


def check_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it is missing or a regular file, else raise.

    A symbolic link is refused too (even to a regular file): replacing it would break the link,
    writing through it would change a file elsewhere without the all-or-nothing guarantee.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return p
    except OSError as exc:
        raise OutputFileError(f"{p}: cannot write ({os_message(exc)})", exc.errno) from None
    if stat.S_ISREG(st.st_mode):
        return p
    if stat.S_ISLNK(st.st_mode):
        kind = "a symbolic link"
    elif stat.S_ISDIR(st.st_mode):
        kind = "a folder"
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        kind = "a device"
    else:
        kind = "not a regular file"
    raise OutputFileError(f"{p}: is {kind}, not a regular file; give a file path to write (not replaced)")


def temp_path(path: Path) -> Path:
    """The temporary name :func:`atomic_write` uses for ``path`` in this process: hidden, and with
    the target's suffix (writers that choose the format by suffix write the right one)."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview | str | None = None,
    *,
    write: Callable[[Path], object] | None = None,
    check: Callable[[Path], object] | None = None,
    fsync: bool = True,
) -> Path:
    """Replace ``path`` with new content, all or nothing; return ``path``.

    Parameters
    ----------
    path
        The target: missing, or an existing regular file (anything else is refused untouched).
    data
        The content (``str`` is written as UTF-8). Give ``data`` or ``write``, not both.
    write
        A function writing the content to the temporary path it is given (``df.to_csv``,
        ``skops.io.dump``, …), for writers that want a file name.
    check
        Called with the temporary path before the rename; an exception from it aborts the write
        (the target is left as it was).
    fsync
        Flush the file to the disk before the rename (so a crash leaves the old or the new file).

    Raises
    ------
    OutputFileError
        The target is not a regular file, or an ``OSError`` (full or read-only disk, missing
        folder, no permission) happened; no temporary file is left.
    """
    if (data is None) == (write is None):
        raise TypeError("atomic_write: give data or write, not both")
    target = check_target(path)
    tmp = temp_path(target)
    try:
        if write is not None:
            write(tmp)
            if fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        else:
            assert data is not None
            payload = data.encode("utf-8") if isinstance(data, str) else data
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        check_target(target)  # it may have changed since (a symlink put in its place)
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise OutputFileError(f"{target}: cannot write ({os_message(exc)})", exc.errno) from None
    except BaseException:
        _remove(tmp)
        raise
    return target


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink()


__all__ = ["TMP_PREFIX", "OutputFileError", "atomic_write", "check_target", "os_message", "temp_path"]
