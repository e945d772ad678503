"""Bad input to ``foliotune predict`` and ``foliotune fit`` (issue 13, items 2-4), through the real CLI.

Every refusal is one line on stderr naming the file (or option), row and column, exit status 2, no
traceback and no output file. The fuzz test at the end writes random points files (well-formed or
not) and checks the CSV path against single-point predictions made from explicit options.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.cli import main

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The real command line in a subprocess (this tree first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def assert_refused(r: subprocess.CompletedProcess[str], *needles: str, notes: bool = False) -> None:
    """Exit 2, one error line naming ``needles``, no traceback; ``notes``: other lines before it
    are allowed (``fit`` reports the measurement rows it skipped)."""
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    if notes:
        assert [x for x in lines if x.startswith("foliotune: error:")] == lines[-1:], r.stderr
        lines = lines[-1:]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- item 2: silent misreads are refused ------------------------------------------------------

MISREADS = [
    # a row with more fields than the header: pandas took the first field as the index
    ("folio_kb,batch_limit_pages\n4,512,64\n", "row 2, column 3"),
    # a short row took the defaults
    ("folio_kb,batch_limit_pages\n4,512\n2048\n", "row 3, column batch_limit_pages"),
    # `nan` (and `inf`, and an empty cell) became the default
    ("folio_kb,batch_limit_pages\nnan,512\n", "row 2, column folio_kb"),
    ("batch_limit_pages,busy_prob\n512,inf\n", "row 2, column busy_prob"),
    ("folio_kb,batch_limit_pages\n4,\n", "row 2, column batch_limit_pages"),
    ("folio_kb,batch_limit_pages\n4,512\n,512\n", "row 3, column folio_kb"),
    # a header-only file wrote an empty result
    ("folio_kb,batch_limit_pages\n", "no data rows"),
    ("folio_kb,batch_limit_pages\n\n\n", "no data rows"),
    # a trailing comma is an extra field
    ("folio_kb,batch_limit_pages\n4,512,\n", "row 2, column 3"),
    # blank lines are skipped but counted: rows are lines of the file
    ("folio_kb\n4\n\n\n12\n", "row 5, column folio_kb"),
]


@pytest.mark.parametrize("text,needle", MISREADS, ids=[f"misread{i}" for i in range(len(MISREADS))])
def test_misread_points_are_refused_naming_file_row_and_column(
    tmp_path: Path, text: str, needle: str
) -> None:
    pts = tmp_path / "points.csv"
    pts.write_text(text)
    out = tmp_path / "out.csv"
    r = cli("predict", "--points", str(pts), "--out", str(out))
    assert_refused(r, str(pts), needle)
    assert sorted(tmp_path.iterdir()) == [pts]


@pytest.mark.parametrize(
    "text,needle",
    [
        # 1e19 wrapped past int64 to the unbatched path
        ("batch_limit_pages\n512\n1e19\n", "row 3, column batch_limit_pages"),
        # 1e308 folios gave negative flush rounds and infinite bytes/s
        ("n_folios\n1e308\n", "row 2, column n_folios"),
    ],
)
def test_values_outside_the_documented_ranges_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    pts = tmp_path / "points.csv"
    pts.write_text(text)
    out = tmp_path / "out.csv"
    r = cli("predict", "--points", str(pts), "--out", str(out))
    assert_refused(r, str(pts), needle)
    assert not out.exists()


def test_montecarlo_work_is_bounded_with_a_message_saying_what_fits(tmp_path: Path) -> None:
    pts = tmp_path / "points.csv"
    out = tmp_path / "out.csv"
    pts.write_text("n_folios,batch_limit_pages\n4096,512\n1000000000000000000,512\n")
    r = cli("predict", "--points", str(pts), "--model", "montecarlo", "--out", str(out))  # was MemoryError
    assert_refused(r, f"{pts}: row 3, column n_folios")
    # in the documented range, but not in the Monte Carlo's scratch memory
    pts.write_text("n_folios,batch_limit_pages\n4096,512\n2147483647,512\n")
    r = cli("predict", "--points", str(pts), "--model", "montecarlo", "--out", str(out))
    assert_refused(r, f"{pts}: row 3, column n_folios", "folios of these sizes fit")
    # 2 MiB folios may split into 512 pieces each: far fewer of them fit (24 GB asked before)
    r = cli("predict", "--n-folios", "1000000", "--folio-kb", "2048", "--model", "montecarlo")
    assert_refused(r, "--n-folios: ", "folios of these sizes fit")
    found = re.search(r"up to ([\d,]+) folios of these sizes fit", r.stderr)
    assert found is not None
    fit = int(found.group(1).replace(",", ""))
    assert 10_000 < fit < 1_000_000
    # each point fits, the run does not: the message says which knobs make it fit
    r = cli("predict", "--n-folios", "10000000", "--model", "montecarlo", "--replicas", "100000")
    assert_refused(r, "--replicas: ", "fewer points, folios or replicas fit")
    assert not out.exists()
    # what the message says fits runs; one folio more does not
    thp = ("--folio-kb", "2048", "--model", "montecarlo", "--replicas", "2")
    r = cli("predict", "--n-folios", str(fit), *thp)
    assert r.returncode == 0, r.stderr
    assert_refused(cli("predict", "--n-folios", str(fit + 1), *thp), "--n-folios: ")


# --- item 3: errors name the file, the right row, the real column, the option -----------------


def test_row_errors_name_the_file_and_the_same_row_for_every_model(tmp_path: Path) -> None:
    pts = tmp_path / "points.csv"
    pts.write_text("copy_engine,batch_limit_pages\ncpu,512\nwarp,512\n")
    for model in ("analytic", "montecarlo", "regression"):
        r = cli("predict", "--points", str(pts), "--model", model)
        assert_refused(r, f"{pts}: row 3, column copy_engine")  # regression said "row 2"


def test_a_folio_mix_is_refused_by_the_regression_not_a_traceback(tmp_path: Path) -> None:
    pts = tmp_path / "points.csv"
    pts.write_text('folio_kb,folio_mix\n2048,\n,"4:0.5,64:0.5"\n')
    r = cli("predict", "--points", str(pts), "--model", "regression")  # was sklearn's "X contains NaN"
    assert_refused(r, f"{pts}: row 3, column folio_mix", "one folio size")
    r = cli("predict", "--points", str(pts), "--model", "analytic")
    assert r.returncode == 0, r.stderr


def test_a_duplicated_column_is_reported_by_its_name(tmp_path: Path) -> None:
    pts = tmp_path / "points.csv"
    pts.write_text("folio_kb,batch_limit_pages,folio_kb\n4,512,2048\n")
    r = cli("predict", "--points", str(pts))
    assert_refused(r, str(pts), "row 1, column 3", "'folio_kb' appears twice")
    assert "folio_kb.1" not in r.stderr


def test_single_point_errors_name_the_option_not_a_row() -> None:
    r = cli("predict", "--folio-kb", "12")
    assert_refused(r, "--folio-kb: must be a power of two between 4 and 2048 KiB")
    assert "row" not in r.stderr
    r = cli("predict", "--batch-limit-pages", "1,512,0")
    assert_refused(r, "--batch-limit-pages value 3 of 3 ('0'): outside 1")
    r = cli("predict", "--n-folios", "many")  # a text option: one line, not click's usage box
    assert_refused(r, "--n-folios: not a number")
    r = cli("predict", "--profile", "nope", "--model", "regression")
    assert_refused(r, "--profile: unknown profile 'nope'")


# --- item 4: folders and unwritable or full file systems ---------------------------------------


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` for the test (root only), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def fill(fs: Path) -> None:
    """Fill a file system to the last block."""
    with contextlib.suppress(OSError), open(fs / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


def test_a_folder_or_a_device_as_points_is_refused(tmp_path: Path) -> None:
    r = cli("predict", "--points", str(tmp_path))  # was IsADirectoryError
    assert_refused(r, str(tmp_path), "is a folder")
    r = cli("predict", "--points", "/dev/zero", timeout=60)  # would read forever
    assert_refused(r, "/dev/zero", "is a device")


def test_predict_out_on_read_only_and_full_file_systems(tmp_path: Path) -> None:
    pts = tmp_path / "points.csv"
    pts.write_text("folio_kb,batch_limit_pages\n4,512\n")
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        r = cli("predict", "--points", str(pts), "--out", str(ro / "out.csv"))
        assert_refused(r, str(ro / "out.csv"), "read-only file system")
    with tmpfs(tmp_path / "full", "64k") as full:
        fill(full)
        r = cli("predict", "--points", str(pts), "--out", str(full / "out.csv"))
        assert_refused(r, str(full / "out.csv"), "no space left on device")
        assert sorted(p.name for p in full.iterdir()) == ["filler"]  # no temporary file left
    r = cli("predict", "--points", str(pts), "--out", str(tmp_path))
    assert_refused(r, f"--out {tmp_path}", "is a folder")


def test_fit_out_on_read_only_and_full_disks_leaves_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
        r = cli("fit", "--no-cv", "--out", str(ro / "model"))
        assert_refused(r, f"--out {ro / 'model'}", "read-only", notes=True)
    with tmpfs(tmp_path / "full", "64k") as full:  # the estimator alone is larger than 64 KiB
        r = cli("fit", "--no-cv", "--out", str(full / "model"))
        assert_refused(r, str(full / "model"), "no space left on device", notes=True)
        assert list(full.iterdir()) == []  # no estimator.skops.tmp, no half-made folder


# --- fuzz: a points file gives exit 2 naming the file, or exactly the single-point results -----

COLUMNS: dict[str, list[str]] = {  # cells, valid and not, as a user might type them
    "profile": ["epyc-zen3-2s", "grace-2s", "xeon-e5-2650v3-2s", "spr-dsa-2s", "nope"],
    "folio_kb": ["4", "64", "2048", "12", "4096", "4.0", "1e19"],
    "n_folios": ["1", "512", "4096", "0", "30000", "1e308", "1e18"],
    "batch_limit_pages": ["1", "2", "512", "4096", "0", "1e19", "-5"],
    "copy_engine": ["cpu", "mt-cpu", "dma", "dsa", "warp", "CPU"],
    "copy_threads": ["1", "4", "0", "1.5"],
    "target_cpus": ["1", "16", "500"],
    "mapcount": ["1", "3", "0"],
    "busy_prob": ["0", "0.1", "0.5", "1.5", "-0.1"],
    "access_rate_hz": ["0", "1000", "1e6", "-1"],
    "mode": ["sync", "async", "lazy"],
    "kernel": ["6.1", "6.6", "6.15", "5.0", "6.x"],
    "folio_mix": ['"4:0.5,64:0.5"', '"4:1"', '"4:0.5,64:0.6"', '"12:1"', "64:1"],
    "numa_hinting": ["0", "1", "2"],
    "writeback_prob": ["0", "0.2", "2"],
    "writeback_wait_s": ["0.001", "0", "11"],
    "alloc_fail_prob": ["0", "0.05", "-1"],
}
JUNK = ["", "nan", "NaN", "inf", "-inf", "abc", "0x10", "N/A", "null", "None", '"4"', " 4 ", '"1,5"']


@st.composite
def points_files(draw: st.DrawFn) -> tuple[str, list[list[str]] | None]:
    """(file text, cells of each row) — cells is None when the file is malformed as a table."""
    cols = draw(st.lists(st.sampled_from(sorted(COLUMNS)), min_size=1, max_size=5, unique=True))
    nrows = draw(st.integers(0, 4))
    # in a one-column file an empty cell is a blank line (skipped), so only wider files get one
    junk = JUNK if len(cols) > 1 else [j for j in JUNK if j.strip()]
    rows = [[draw(st.sampled_from(COLUMNS[c] + junk)) for c in cols] for _ in range(nrows)]
    header = list(cols)
    malformed = nrows == 0
    damage = draw(st.sampled_from(["none"] * 6 + ["extra", "short", "dup", "unknown", "quote"]))
    if damage == "extra" and rows:
        rows[draw(st.integers(0, len(rows) - 1))].append("64")
        malformed = True
    elif damage == "short" and rows and len(cols) > 1:
        r = draw(st.integers(0, len(rows) - 1))
        rows[r] = rows[r][:-1]
        malformed = True
    elif damage == "dup":
        header.append(header[0])
        rows = [r + [r[0]] for r in rows]
        malformed = True
    elif damage == "unknown":
        header.append("folio_size")
        rows = [r + ["4"] for r in rows]
        malformed = True
    elif damage == "quote" and rows:
        rows[0][0] = '"4'
        malformed = True

    nl = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [",".join(header)]
    for r in rows:
        lines.extend([""] * draw(st.integers(0, 1)))  # a blank line now and then
        lines.append(",".join(r))
    text = nl.join(lines) + draw(st.sampled_from([nl, ""]))
    return text, None if malformed else rows


def _run_main(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


def _rows_equal(a: pd.Series, b: pd.Series) -> bool:
    for col in a.index:
        x, y = a[col], b[col]
        if isinstance(x, str) or isinstance(y, str):
            if str(x) != str(y):
                return False
        elif not (x == y or (x != x and y != y)):  # exact, NaN equal to NaN
            return False
    return True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(points=points_files(), model=st.sampled_from(["analytic", "analytic", "montecarlo", "regression"]))
def test_fuzzed_points_files_exit_2_naming_the_file_or_match_single_point_predictions(
    tmp_path_factory: pytest.TempPathFactory, points: tuple[str, list[list[str]] | None], model: str
) -> None:
    text, rows = points
    d = tmp_path_factory.mktemp("fuzz") / uuid.uuid4().hex
    d.mkdir()
    pts = d / "points.csv"
    pts.write_bytes(text.encode())
    out = d / "out.csv"
    extra = ["--replicas", "2"] if model == "montecarlo" else []
    code, err = _run_main(["predict", "--points", str(pts), "--model", model, "--out", str(out), *extra])
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and f"{pts}: " in lines[0], err
        assert not out.exists()
    if rows is None:
        assert code == 2, f"a malformed file was read (exit 0):\n{text!r}"
        return
    # the oracle: each row's cells given as options, one point at a time
    header = text.splitlines()[0].split(",")
    expected: list[pd.Series | None] = []
    for i, r in enumerate(rows):
        opts: list[str] = []
        mix = dict(zip(header, r, strict=True)).get("folio_mix", "").strip()
        for col, c in zip(header, r, strict=True):
            value = c[1:-1] if len(c) > 1 and c.startswith('"') and c.endswith('"') else c
            if not value.strip() and (col == "folio_mix" or (col == "folio_kb" and mix)):
                continue  # documented empties: no mix (one size), no folio_kb beside a mix
            if col == "batch_limit_pages" and "," in value:  # a comma list as an option: not one point
                value = "not one number"
            opts.append(f"--{col.replace('_', '-')}={value}")
        one = d / f"one{i}.csv"
        c1, e1 = _run_main(["predict", *opts, "--model", model, "--out", str(one), *extra])
        assert c1 in (0, 2), e1
        expected.append(pd.read_csv(one).iloc[0] if c1 == 0 else None)
    if any(e is None for e in expected):
        assert code == 2, f"exit 0 although a row is refused as options:\n{text!r}"
        bad_lines = {str(n) for n, e in zip(_data_lines(text), expected, strict=True) if e is None}
        assert any(f"row {n}," in err for n in bad_lines), (err, bad_lines)
        return
    assert code == 0, f"refused a file whose every row is a valid single point:\n{text!r}\n{err}"
    got = pd.read_csv(out)
    assert len(got) == len(rows)
    for i, e in enumerate(expected):
        assert e is not None
        assert sorted(got.columns) == sorted(e.index)
        assert _rows_equal(got.iloc[i][sorted(e.index)], e[sorted(e.index)]), (text, i)


def _data_lines(text: str) -> list[int]:
    """The line numbers (1-based) of the non-blank lines after the header."""
    return [n for n, line in enumerate(text.splitlines(), start=1) if n > 1 and line.strip()]
