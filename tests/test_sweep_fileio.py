"""models/fileio.atomic_write, the one temp-and-rename helper: real devices, symlinks, full and
read-only file systems (small tmpfs mounts when this user may mount them)."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.fileio import OutputFileError, atomic_write


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def _cli(*args: str) -> int:
    from app.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


def test_writes_and_replaces_a_regular_file(tmp_path: Path) -> None:
    target = tmp_path / "a.csv"
    atomic_write(target, "one\n")
    atomic_write(target, b"two\n")
    atomic_write(target, write=lambda p: p.write_text("three\n"))
    assert target.read_text() == "three\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_dev_full_is_refused_and_the_device_node_stays(capsys: pytest.CaptureFixture[str]) -> None:
    """`--out /dev/full` replaced the device node with a regular file (issue 13 item 10)."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    assert _cli("predict", "--profile", "epyc-zen3-2s", "--out", "/dev/full") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/dev/full: is a device, not a regular file" in err[0], err
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)


def test_symlink_and_folder_are_refused_untouched(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("keep")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    with pytest.raises(OutputFileError, match="is a symbolic link"):
        atomic_write(link, "new")
    assert link.is_symlink() and real.read_text() == "keep"
    with pytest.raises(OutputFileError, match="is a folder"):
        atomic_write(tmp_path, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real.csv"]


def test_full_disk_is_one_line_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "small", "size=64k") as mnt:
        target = mnt / "out.bin"
        target.write_bytes(b"old")
        with pytest.raises(OutputFileError) as info:
            atomic_write(target, b"x" * (1 << 20))
        assert str(info.value) == f"{target}: cannot write (no space left on device)"
        assert target.read_bytes() == b"old" and sorted(p.name for p in mnt.iterdir()) == ["out.bin"]


def test_read_only_file_system_is_one_line(tmp_path: Path) -> None:
    with _tmpfs(tmp_path / "ro", "size=64k,ro") as mnt:
        with pytest.raises(OutputFileError) as info:
            atomic_write(mnt / "out.csv", "a")
        assert str(info.value) == f"{mnt / 'out.csv'}: cannot write (read-only file system)"


def test_a_failing_writer_or_check_leaves_the_target_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "t.toml"
    target.write_text("old")

    def boom(p: Path) -> None:
        p.write_text("half")
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        atomic_write(target, write=boom)
    with pytest.raises(ValueError, match="refused"):
        atomic_write(target, "new", check=lambda p: boom(p))
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]
