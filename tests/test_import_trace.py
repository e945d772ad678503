"""``foliotune import-trace``: traces captured on this machine by the tests themselves.

The same real migrations (memory hotplug, as ``foliotune measure --kernel`` drives them) are recorded
at once by a raw tracefs instance (also as ``trace-cmd report`` text) and by ``perf record``; the
three texts must give the same calls. Bad input (empty, truncated mid-line, other events only, unpaired events, binary
``perf.data``) gives one line naming the file and the line, exit 2 and no output file.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from app.cli import main
from models.measure import read_topology
from models.measure.kernel_run import check_kernel_support, run_kernel_measurements
from models.measure.sysstate import SystemState, Unavailable

EVENTS = ("migrate:mm_migrate_pages_start", "migrate:mm_migrate_pages", "tlb:tlb_flush")


def _why_not() -> str | None:
    try:
        check_kernel_support(read_topology())
    except Unavailable as exc:
        return str(exc)
    for tool in ("perf", "trace-cmd"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (make tracetools)"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The same real migrations recorded three ways at once: a raw tracefs instance (also extracted
    with ``trace-cmd extract`` for ``trace-cmd report``) and ``perf record``. The migrations are the
    memory-hotplug calls of ``foliotune measure --kernel`` (4 KiB and 64 KiB folios)."""
    d = tmp_path_factory.mktemp("traces")
    with SystemState() as st:
        inst = st.tracefs_instance()
        for ev in EVENTS:
            (inst / "events" / ev.replace(":", "/") / "enable").write_text("1")
        (inst / "buffer_size_kb").write_text("16384")
        pf = subprocess.Popen(
            ["perf", "record", "-q", "-a", "-o", str(d / "perf.data"), *sum((["-e", e] for e in EVENTS), [])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(2.0)
            (inst / "tracing_on").write_text("1")
            run_kernel_measurements(read_topology(), repeats=1, sizes_kb=[4, 64])
            (inst / "tracing_on").write_text("0")
            time.sleep(0.5)
        finally:
            pf.send_signal(signal.SIGINT)
            pf.wait(timeout=120)
        (d / "raw.txt").write_text((inst / "trace").read_text())
        # trace-cmd record cannot run here (it must enable /proc/sys/kernel/ftrace_enabled): the
        # instance's buffer is extracted into trace.dat instead, then reported like any recording.
        subprocess.run(
            ["trace-cmd", "extract", "-B", inst.name, "-o", str(d / "trace.dat")],
            capture_output=True,
            check=True,
        )
    with (d / "trace-cmd.txt").open("w") as f:
        subprocess.run(
            ["trace-cmd", "report", "-i", str(d / "trace.dat")],
            stdout=f,
            stderr=subprocess.DEVNULL,
            check=True,
        )
    with (d / "perf.txt").open("w") as f:
        subprocess.run(
            ["perf", "script", "-i", str(d / "perf.data")], stdout=f, stderr=subprocess.DEVNULL, check=True
        )
    paths = {k: d / f"{k}.txt" for k in ("raw", "trace-cmd", "perf")}
    paths["perf.data"] = d / "perf.data"
    yield paths


def _import(*args: str) -> tuple[int, str]:
    """``foliotune import-trace ARGS`` through the real entry point: (exit status, stderr)."""
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["import-trace", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


def _ends(path: Path) -> int:
    return len(re.findall(r"mm_migrate_pages: ", path.read_text()))


@pytest.mark.parametrize("kind", ["raw", "trace-cmd", "perf"])
def test_each_format_gives_one_row_set_per_call(captured, kind, tmp_path):
    out = tmp_path / "rows.csv"
    code, err = _import(
        str(captured[kind]), "--profile", "epyc-zen3-2s", "--out", str(out), "--kernel", "6.18"
    )
    assert code == 0, err
    rows = pd.read_csv(out)
    calls = rows[rows["variant"].str.startswith("call ")]
    moved = calls[calls["metric"] == "pages_per_s"]
    assert 0 < len(moved) <= _ends(captured[kind])
    assert set(rows["kernel"].astype(str)) == {"6.18"}
    assert (rows["value"] > 0).all()
    assert set(calls["mode"].dropna()) <= {"sync", "async"}


def test_the_three_formats_agree_on_the_same_migrations(captured, tmp_path):
    tables = {}
    for kind in ("raw", "trace-cmd", "perf"):
        out = tmp_path / f"{kind}.csv"
        code, err = _import(
            str(captured[kind]), "--profile", "epyc-zen3-2s", "--out", str(out), "--source", "x"
        )
        assert code == 0, err
        t = pd.read_csv(out)
        tables[kind] = t[t["metric"] == "pages_per_s"].sort_values("variant").reset_index(drop=True)
    # the same calls, the same pages (n_folios) in each; durations agree to the microsecond
    # resolution the text formats print
    for kind in ("trace-cmd", "perf"):
        pd.testing.assert_series_equal(tables[kind]["n_folios"], tables["raw"]["n_folios"], check_exact=True)
    raw_t = pd.read_csv(tmp_path / "raw.csv")
    tc_t = pd.read_csv(tmp_path / "trace-cmd.csv")
    a = raw_t[raw_t["metric"] == "time_s"].sort_values("variant")["value"].to_numpy()
    b = tc_t[tc_t["metric"] == "time_s"].sort_values("variant")["value"].to_numpy()
    assert len(a) == len(b) and abs(a - b).max() <= 2e-6


def test_unreadable_lines_are_counted_and_named(captured, tmp_path):
    lines = captured["raw"].read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if not ln.startswith("#"))
    bad = tmp_path / "with-garbage.txt"
    bad.write_text("".join(lines[:at]) + "this is not an event line\n" + "".join(lines[at:]))
    code, err = _import(str(bad), "--profile", "epyc-zen3-2s", "--out", str(tmp_path / "o.csv"))
    assert code == 0, err
    assert f"1 unreadable line(s) skipped (first: {at + 1})" in err


def _bad(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


@pytest.mark.parametrize(
    "case", ["empty", "truncated", "other-events", "unpaired-start", "unpaired-end", "perf.data"]
)
def test_bad_traces_exit_2_with_one_line_and_no_output(captured, tmp_path, case):
    raw = captured["raw"].read_text()
    lines = raw.splitlines(keepends=True)
    start_i = next(i for i, ln in enumerate(lines) if "mm_migrate_pages_start:" in ln)
    end_i = next(i for i, ln in enumerate(lines) if "mm_migrate_pages: " in ln)
    if case == "empty":
        path, line = _bad(tmp_path, "empty.txt", ""), None
    elif case == "truncated":
        cut = raw[: raw.index("mm_migrate_pages: ") + 10]
        path, line = _bad(tmp_path, "cut.txt", cut), cut.count("\n") + 1
    elif case == "other-events":
        keep = [ln for ln in lines if "migrate_pages" not in ln]
        path, line = _bad(tmp_path, "flush-only.txt", "".join(keep)), None
    elif case == "unpaired-start":
        keep = lines[:end_i] + lines[end_i + 1 :]
        path, line = _bad(tmp_path, "no-end.txt", "".join(keep)), start_i + 1
    elif case == "unpaired-end":
        keep = lines[:start_i] + lines[start_i + 1 :]
        path, line = _bad(tmp_path, "no-start.txt", "".join(keep)), end_i
    else:
        path, line = captured["perf.data"], 1
    out = tmp_path / "out.csv"
    code, err = _import(str(path), "--profile", "epyc-zen3-2s", "--out", str(out))
    assert code == 2
    msg = [ln for ln in err.splitlines() if ln.strip()]
    assert len(msg) == 1 and str(path) in msg[0], err
    if line is not None:
        assert f"line {line}:" in msg[0], msg[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.csv")]


def test_a_good_trace_with_a_bad_one_writes_nothing(captured, tmp_path):
    out = tmp_path / "out.csv"
    empty = _bad(tmp_path, "empty.txt", "")
    code, err = _import(str(captured["raw"]), str(empty), "--profile", "epyc-zen3-2s", "--out", str(out))
    assert code == 2 and "empty.txt" in err
    assert not out.exists()
