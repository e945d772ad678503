"""The results seam (sweep/results.py) and the untrusted manifest: real sweeps, real Parquet, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sweep.results import MANIFEST, ManifestError, open_results, sweep_status
from sweep.runner import run_sweep
from sweep.spec import spec_from_canonical, spec_from_toml

# 27 chunks of 7 points (189 points), as in the report of issue 13 item 5.
SPEC = """
[sweep]
seed = 5
models = ["analytic"]
[fixed]
profile = "epyc-zen3-2s"
n_folios = 512
[axes]
batch_limit_pages = [1, 16, 64, 256, 512, 1024, 4096]
folio_kb = [4, 64, 2048]
copy_engine = ["cpu", "mt-cpu", "dma"]
copy_threads = [1, 2, 4]
"""
CP = 7


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("done") / "out"
    run_sweep(spec_from_toml(SPEC), out, chunk_points=CP, progress=False, backend="serial")
    return out


def _copy(done: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(done, dst)
    return dst


def _cli(*args: str) -> int:
    from app.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


def _edit(out: Path, change: Callable[[dict[str, Any]], None]) -> None:
    m = json.loads((out / MANIFEST).read_text())
    change(m)
    (out / MANIFEST).write_text(json.dumps(m))


def test_open_results_is_one_typed_value(done: Path) -> None:
    spec = spec_from_toml(SPEC)
    res = open_results(done)
    assert res.spec == spec_from_canonical(spec.canonical(), source=res.spec.source)
    assert res.spec.hash == spec.hash and res.spec.seed == 5 and res.spec.replicas == spec.replicas
    assert res.manifest.n_chunks == 27 and res.manifest.chunk_points == CP
    assert res.status.complete and res.status.points_done == 189 and res.status.verified == "full"
    assert len(res.files) == 27
    pd.testing.assert_frame_equal(res.frame(), pd.read_parquet(done), check_exact=True)
    assert res.dataset().count_rows() == 189
    sel = res.table(["point", "pages_per_s"])
    assert sel.column_names == ["point", "pages_per_s"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda m: m.pop("n_chunks"), "no 'n_chunks'"),
        (lambda m: m.update(chunks=[]), "'chunks' must be an object"),
        (lambda m: m["chunks"]["3"].update(stop="x"), "chunk 3: stop 'x'"),
        (lambda m: m.update(n_chunks=3), "n_chunks 3"),
        (lambda m: m["spec"]["axes"][0]["values"].pop(), "is not the hash of its spec"),
    ],
)
def test_damaged_manifest_status_is_one_line_and_rerun_rebuilds_keeping_every_chunk(
    done: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any, says: str
) -> None:
    out = _copy(done, tmp_path)
    before = {p.name: p.read_bytes() for p in out.glob("part-*.parquet")}
    _edit(out, change)
    assert _cli("sweep", "status", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / MANIFEST) in err[0] and says in err[0], err
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(SPEC)
    assert _cli("sweep", str(spec_file), "--out", str(out), "--serial", "--no-progress", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["chunks_run"] == 0 and summary["chunks_damaged"] == 0 and summary["chunk_points"] == CP
    assert {p.name: p.read_bytes() for p in out.glob("part-*.parquet")} == before
    st = sweep_status(out)
    assert st.complete and st.points_done == 189


def test_consistently_edited_chunking_is_overruled_by_the_footers(done: Path, tmp_path: Path) -> None:
    """chunk_points and n_chunks edited together (63 × 3): the chunk files' footers say 7 × 27."""
    out = _copy(done, tmp_path)

    def edit(m: dict[str, Any]) -> None:
        m.update(chunk_points=63, n_chunks=3, chunks={})

    _edit(out, edit)
    again = run_sweep(spec_from_toml(SPEC), out, progress=False, backend="serial")
    assert again.chunks_run == 0 and again.chunk_points == CP and again.chunks_total == 27
    assert len(list(out.glob("part-*.parquet"))) == 27


def test_status_verifies_every_chunk_truncated_or_bit_flipped_is_not_complete(
    done: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(done, tmp_path)
    parts = sorted(out.glob("part-*.parquet"))
    data = parts[4].read_bytes()
    parts[4].write_bytes(data[:-10])  # truncated
    flipped = bytearray(parts[9].read_bytes())
    flipped[len(flipped) // 3] ^= 0x10  # one bit in a data page
    parts[9].write_bytes(bytes(flipped))
    st = sweep_status(out)
    assert not st.complete and st.chunks_damaged == 2 and st.points_done == 189 - 2 * CP
    assert set(st.damaged_files) == {parts[4].name, parts[9].name}
    assert _cli("sweep", "status", str(out)) == 0
    text = capsys.readouterr().out
    assert "state:       incomplete" in text and "damaged:     2 chunk file(s)" in text
    # The typed value holds only verified files: it reads whole where pandas on the folder fails.
    assert len(open_results(out).frame()) == 189 - 2 * CP
    again = run_sweep(spec_from_toml(SPEC), out, progress=False, backend="serial")
    assert again.chunks_run == 2 and again.chunks_damaged == 2
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(done), check_exact=True)


def test_a_bit_flip_the_manifest_cannot_see_is_caught_by_page_checksums(done: Path, tmp_path: Path) -> None:
    """With the manifest gone, a file is kept only if its footer and its page checksums vouch for it."""
    out = _copy(done, tmp_path)
    (out / MANIFEST).unlink()
    part = sorted(out.glob("part-*.parquet"))[5]
    flipped = bytearray(part.read_bytes())
    flipped[len(flipped) // 3] ^= 0x10
    part.write_bytes(bytes(flipped))
    again = run_sweep(spec_from_toml(SPEC), out, progress=False, backend="serial")
    assert again.chunks_run == 1 and again.chunks_damaged == 1 and again.chunks_reused == 26
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(done), check_exact=True)


def test_stray_parquet_file_means_not_complete(done: Path, tmp_path: Path) -> None:
    out = _copy(done, tmp_path)
    (out / "notes.parquet").write_bytes(b"not parquet")
    st = sweep_status(out)
    assert not st.complete and st.stray_files == ("notes.parquet",) and st.chunks_done == 27


def test_not_a_sweep_folder(tmp_path: Path) -> None:
    from sweep.results import StoreError

    with pytest.raises(StoreError, match="no such folder"):
        open_results(tmp_path / "nope")
    with pytest.raises(StoreError, match="not a foliotune sweep folder"):
        open_results(tmp_path)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(ManifestError, match="not JSON"):
        open_results(tmp_path)


def test_a_refused_folder_is_one_line_before_any_summary(
    done: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(SPEC.replace("seed = 5", "seed = 6"))
    assert _cli("sweep", str(spec_file), "--out", str(done), "--serial", "--no-progress") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"foliotune: error: {done}: holds a different sweep"), err
