"""Sweeps end to end on real Ray and real Parquet: identical results, resume, faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from models.errors import UserError
from models.params import OUTPUTS, PARAMETERS
from sweep.runner import run_sweep
from sweep.spec import spec_from_toml
from sweep.storage import MANIFEST, StoreError, sweep_status
from tests.cli_sweep import REPO, big_spec, cli_sweep

SPEC = """
[sweep]
seed = 11
models = ["analytic", "montecarlo"]
replicas = 8
[fixed]
n_folios = 512
[axes]
profile = ["epyc-zen3-2s", "grace-2s"]
batch_limit_pages = [1, 32, 512, 4096]
folio_kb = [4, 64, 2048]
copy_engine = ["cpu", "mt-cpu", "dma"]
copy_threads = [1, 4]
busy_prob = [0.0, 0.05]
"""


def read(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The spec evaluated serially in this process with one chunk per 100 points."""
    out = tmp_path_factory.mktemp("ref") / "ref"
    run_sweep(spec_from_toml(SPEC), out, chunk_points=100, progress=False, backend="serial")
    return read(out)


def test_ray_sweep_equals_serial_whatever_workers_and_chunks(
    ray_embedded: object, reference: pd.DataFrame, tmp_path: Path
) -> None:
    spec = spec_from_toml(SPEC)
    for workers, cp in ((2, 37), (1, 500)):  # the reference has chunks of 100
        out = tmp_path / f"w{workers}c{cp}"
        summary = run_sweep(spec, out, workers=workers, chunk_points=cp, progress=False)
        df = read(out)
        pd.testing.assert_frame_equal(df, reference, check_exact=True)
        assert summary.chunks_run == -(-spec.n_points // cp) and summary.chunks_reused == 0
    # Contract layout, one row per point and model, infeasible points kept with NaN outputs.
    assert list(reference.columns[:2]) == ["point", "model"]
    assert list(reference.columns[2 : 2 + len(PARAMETERS)]) == list(PARAMETERS)
    assert list(reference.columns[2 + len(PARAMETERS) : 2 + len(PARAMETERS) + len(OUTPUTS)]) == list(OUTPUTS)
    assert len(reference) == spec.n_rows
    assert reference["point"].tolist() == sorted(list(range(spec.n_points)) * 2)
    bad = reference["infeasible"] != ""
    assert bad.any() and (~bad).any()
    assert reference.loc[bad, list(OUTPUTS)].isna().all().all()
    assert reference.loc[~bad, "time_s"].notna().all()
    st = sweep_status(out)
    assert st["complete"] and st["infeasible_points"] == int(bad.sum()) // 2
    assert summary.infeasible_points == st["infeasible_points"]


def test_values_do_not_depend_on_chunk_size(reference: pd.DataFrame, tmp_path: Path) -> None:
    for cp in (7, 37):
        out = tmp_path / f"c{cp}"
        run_sweep(spec_from_toml(SPEC), out, chunk_points=cp, progress=False, backend="serial")
        pd.testing.assert_frame_equal(read(out), reference, check_exact=True)


def test_resume_runs_only_missing_and_damaged_chunks(reference: pd.DataFrame, tmp_path: Path) -> None:
    spec = spec_from_toml(SPEC)
    out = tmp_path / "out"
    first = run_sweep(spec, out, chunk_points=50, progress=False, backend="serial")
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) == first.chunks_total
    parts[0].unlink()  # missing
    data = parts[1].read_bytes()
    parts[1].write_bytes(data[: len(data) // 2])  # half-written under its final name
    parts[2].write_bytes(data)  # a valid Parquet file that is not chunk 2
    (out / ".tmp-part-000003.parquet.99999").write_bytes(data[:100])  # leftover of a killed write
    again = run_sweep(spec, out, chunk_points=999, progress=False, backend="serial")
    assert again.chunks_run == 3 and again.chunks_damaged == 2 and again.chunk_points == 50
    assert not list(out.glob(".tmp-*"))
    pd.testing.assert_frame_equal(read(out), reference, check_exact=True)
    third = run_sweep(spec, out, progress=False, backend="serial")
    assert third.chunks_run == 0


def test_different_spec_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_sweep(spec_from_toml(SPEC), out, chunk_points=500, progress=False, backend="serial")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(StoreError, match="holds a different sweep"):
        run_sweep(
            spec_from_toml(SPEC.replace("seed = 11", "seed = 12")), out, progress=False, backend="serial"
        )
    assert sorted(p.name for p in out.iterdir()) == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        run_sweep(spec_from_toml(SPEC), foreign, progress=False, backend="serial")


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


@pytest.mark.slow
def test_sigkill_driver_then_rerun_gives_identical_dataset(ray_embedded: object, tmp_path: Path) -> None:
    spec_file = tmp_path / "big.toml"
    spec_file.write_text(big_spec(60))
    spec = spec_from_toml(spec_file.read_text())
    out = tmp_path / "out"
    env = _subprocess_env()
    with cli_sweep(
        spec_file, out, env=env, chunk_points=1000, until_chunks=4, timeout_s=120, kill_group=True
    ) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    written = len(list(out.glob("part-*.parquet")))
    assert 4 <= written < -(-spec.n_points // 1000), "the kill must land mid-sweep"
    resumed = run_sweep(spec, out, workers=2, progress=False)
    assert resumed.chunks_reused >= 4 and resumed.chunks_run == resumed.chunks_total - resumed.chunks_reused
    ref = tmp_path / "ref"
    run_sweep(spec, ref, chunk_points=1000, progress=False, backend="serial")
    got, want = read(out), read(ref)
    assert got["point"].is_unique and len(got) == spec.n_points
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def _running_chunk_workers() -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"ray::compute_chunk"):
            pids.append(int(d.name))
    return pids


@pytest.mark.slow
def test_killed_worker_process_is_retried_with_identical_results(
    ray_embedded: object, tmp_path: Path
) -> None:
    spec = spec_from_toml(big_spec(60))
    out = tmp_path / "out"
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["summary"] = run_sweep(spec, out, workers=2, chunk_points=20000, progress=False)
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    killed = 0
    deadline = time.monotonic() + 120
    while t.is_alive() and not killed and time.monotonic() < deadline:
        pids = _running_chunk_workers()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.02)
    t.join(timeout=300)
    assert killed, "no worker was caught running a chunk"
    assert "error" not in result, result.get("error")
    ref = tmp_path / "ref"
    run_sweep(spec, ref, chunk_points=20000, progress=False, backend="serial")
    pd.testing.assert_frame_equal(read(out), read(ref), check_exact=True)


def test_read_only_folder_is_one_clear_error_and_keeps_written_chunks(
    reference: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder that became unwritable (permissions) after some chunks were written."""
    if os.geteuid() == 0:
        pytest.skip("root ignores permissions; test_full_disk_enospc covers the write failure")
    from app.cli import main

    spec_file = tmp_path / "s.toml"
    spec_file.write_text(SPEC)
    out = tmp_path / "out"
    run_sweep(spec_from_toml(SPEC), out, chunk_points=100, progress=False, backend="serial")
    parts = sorted(out.glob("part-*.parquet"))
    for p in parts[3:]:
        p.unlink()
    out.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as info:
            main(["sweep", str(spec_file), "--out", str(out), "--serial", "--no-progress"])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if line.startswith("foliotune: error: ")]
        assert errors == err[-1:] and "cannot write" in err[-1], err
    finally:
        out.chmod(0o755)
    assert sorted(p.name for p in out.glob("part-*")) == [p.name for p in parts[:3]]
    json.loads((out / MANIFEST).read_text())
    run_sweep(spec_from_toml(SPEC), out, progress=False, backend="serial")
    pd.testing.assert_frame_equal(read(out), reference, check_exact=True)


def test_full_disk_enospc(reference: pd.DataFrame, tmp_path: Path) -> None:
    """A real full file system (a 96 KiB tmpfs, when this user may mount one)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the read-only folder test covers non-root")
    try:
        out = mnt / "out"
        with pytest.raises(UserError, match="no space left on device") as info:
            run_sweep(spec_from_toml(SPEC), out, chunk_points=25, progress=False, backend="serial")
        assert "\n" not in str(info.value) and "already written" in str(info.value)
        manifest = json.loads((out / MANIFEST).read_text())
        recorded = {int(c) for c in manifest["chunks"]}
        assert recorded and len(recorded) < manifest["n_chunks"]
        assert not list(out.glob(".tmp-*"))
        moved = tmp_path / "moved"
        shutil.copytree(out, moved)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    done = run_sweep(spec_from_toml(SPEC), moved, progress=False, backend="serial")
    assert done.chunks_reused >= len(recorded)
    pd.testing.assert_frame_equal(read(moved), reference, check_exact=True)


def test_unwritable_output_folder_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    spec_file = tmp_path / "s.toml"
    spec_file.write_text(SPEC)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as info:
        main(["sweep", str(spec_file), "--out", str(blocker / "out"), "--serial", "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("foliotune: error: ")]
    assert errors == err[-1:] and "cannot create output folder" in err[-1]


def test_cli_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    spec_file = tmp_path / "s.toml"
    spec_file.write_text(SPEC)
    out = tmp_path / "out"

    def cli(*args: str) -> None:
        with pytest.raises(SystemExit) as info:
            main(list(args))
        assert info.value.code in (0, None)

    cli("sweep", str(spec_file), "--out", str(out), "--serial", "--chunk-points", "100", "--json")
    summary = json.loads(capsys.readouterr().out)
    assert summary["chunks_run"] == summary["chunks_total"]
    cli("sweep", "status", str(out), "--json")
    st = json.loads(capsys.readouterr().out)
    assert st["complete"] and st["points_done"] == st["n_points"] == spec_from_toml(SPEC).n_points
    # Why points are infeasible, counted once per point (not per model row), as the files say.
    rows = read(out)
    per_point = rows[rows["infeasible"] != ""].drop_duplicates("point")["infeasible"].value_counts()
    assert st["infeasible_reasons"] == per_point.to_dict() and sum(per_point) == st["infeasible_points"] > 0
    cli("sweep", "status", str(out))
    text = capsys.readouterr().out
    assert "complete" in text
    top = per_point.index[0]
    assert f"{per_point.iloc[0]:,}  {top}" in text
