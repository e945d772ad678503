"""The measurement schema: the shipped dataset loads clean, and bad files fail with file/row/column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.measurements import (
    COLUMNS,
    METRICS,
    SHIPPED_PATH,
    MeasurementError,
    load_measurements,
    model_rows,
    read_measurements,
    write_measurements,
)

GOOD = {
    "source": "t-src",
    "reference": "test",
    "machine": "test box",
    "profile": "epyc-zen3-2s",
    "date": "2026-01-02",
    "trust": "A",
    "folio_kb": "64",
    "n_folios": "16384",
    "batch_limit_pages": "512",
    "copy_engine": "mt-cpu",
    "copy_threads": "4",
    "metric": "bytes_per_s",
    "value": "7.5",
    "sd": "0.25",
    "unit": "GB/s",
}


def _csv(tmp_path: Path, rows: list[dict[str, str]], name: str = "m.csv") -> Path:
    p = tmp_path / name
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


def test_shipped_dataset_loads_strictly_with_provenance() -> None:
    data, reports = load_measurements(strict=True)
    assert reports[0].n_skipped == 0 and reports[0].kept == len(data) > 200
    for col in ("source", "reference", "machine", "profile", "date", "trust"):
        assert (data[col].str.len() > 0).all(), col
    assert set(data["trust"]) <= {"A", "B", "C"}
    # SI: migration throughputs are bytes per second (GB/s scale), per-page costs are microseconds in seconds.
    bps = data[data["metric"] == "bytes_per_s"]["value"]
    assert bps.between(1e8, 1e11).all()
    tpp = data[data["metric"] == "time_per_page_s"]["value"]
    assert tpp.between(1e-7, 1e-4).all()
    assert (data["unit"] == [METRICS[m].unit for m in data["metric"]]).all()


def test_shipped_amd_tables_cover_folio_threads_and_channels() -> None:
    data, _ = load_measurements()
    amd = model_rows(data, ["bytes_per_s"])
    amd = amd[amd["source"] == "garg-rfc-v2-2025-03"]
    mt = amd[(amd["copy_engine"] == "mt-cpu") & (amd["variant"] == "")]
    dma = amd[(amd["copy_engine"] == "dma") & (amd["variant"] == "")]
    sizes = {4, 16, 32, 64, 128, 256, 512, 1024, 2048}
    assert set(mt["folio_kb"]) == sizes and set(mt["copy_threads"]) == {1, 2, 4, 8, 16}
    assert set(dma["folio_kb"]) == sizes and set(dma["copy_threads"]) == {1, 2, 4, 8, 16}
    # 1 GiB moved per call in the folio-size tables
    assert ((mt["folio_kb"] * 1024 * mt["n_folios"]) == 1 << 30).all()
    # the v4 and v5 tables are there too (vanilla kernel and DMA channels)
    assert {"garg-v4-2026-03", "garg-v5-2026-05"} <= set(model_rows(data)["source"])


def test_units_are_converted_to_si(tmp_path: Path) -> None:
    rows = [
        GOOD,
        {**GOOD, "metric": "time_per_page_s", "value": "3.5", "sd": "", "unit": "us"},
        {**GOOD, "metric": "copy_fraction", "value": "25", "sd": "1", "unit": "%"},
    ]
    data, rep = read_measurements(_csv(tmp_path, rows), strict=True)
    assert rep.kept == 3
    assert data["value"].tolist() == pytest.approx([7.5e9, 3.5e-6, 0.25])
    assert data["sd"].iloc[0] == pytest.approx(0.25e9) and np.isnan(data["sd"].iloc[1])
    assert data["unit"].tolist() == ["B/s", "s", "1"]
    assert data["predicted"].tolist() == [True, True, False]


def test_missing_parameters_take_profile_defaults(tmp_path: Path) -> None:
    row = {k: v for k, v in GOOD.items() if k not in ("n_folios", "batch_limit_pages")}
    data, _ = read_measurements(_csv(tmp_path, [row]), strict=True)
    assert data["batch_limit_pages"].iloc[0] == 512 and data["n_folios"].iloc[0] >= 1
    assert set(COLUMNS) <= set(data.columns)


@pytest.mark.parametrize(
    ("change", "column", "why"),
    [
        ({"unit": "furlongs"}, "unit", "not accepted"),
        ({"metric": "sysbench_score"}, "metric", "unknown metric"),
        ({"value": "nan"}, "value", "not a finite number"),
        ({"value": ""}, "value", "empty"),
        ({"value": "-1"}, "value", "negative"),
        ({"sd": "-0.1"}, "sd", "negative"),
        ({"profile": "no-such-box"}, "profile", "unknown profile"),
        ({"trust": "D"}, "trust", "A, B or C"),
        ({"date": "yesterday"}, "date", "YYYY-MM"),
        ({"folio_kb": "48"}, "folio_kb", "of two"),
        ({"copy_engine": "dsa"}, "copy_engine", "not available"),
        ({"copy_threads": "x"}, "copy_threads", "not a number"),
    ],
)
def test_bad_row_is_skipped_by_default_and_refused_when_strict(
    tmp_path: Path, change: dict[str, str], column: str, why: str
) -> None:
    path = _csv(tmp_path, [GOOD, {**GOOD, "source": "other", **change}, {**GOOD, "folio_kb": "128"}])
    data, rep = read_measurements(path)
    assert rep.kept == 2 and len(data) == 2 and rep.n_skipped == 1
    row, col, text = rep.skipped[0]
    assert (row, col) == (3, column) and why in text  # header = row 1, so the 2nd data row is row 3
    assert "row 3" in rep.summary() and str(path) in rep.summary()
    with pytest.raises(MeasurementError) as exc:
        read_measurements(path, strict=True)
    msg = str(exc.value)
    assert str(path) in msg and "row 3" in msg and f"column {column}" in msg and "\n" not in msg


def test_duplicates_name_the_first_row(tmp_path: Path) -> None:
    # Same configuration after defaults are filled in: an explicit default equals a left-out cell.
    dup = {**GOOD, "value": "7.9", "target_cpus": ""}
    path = _csv(tmp_path, [GOOD, {**GOOD, "folio_kb": "128"}, dup, {**GOOD, "variant": "placement B"}])
    data, rep = read_measurements(path)
    assert rep.kept == 3
    assert rep.skipped == [(4, "metric", "duplicate of row 2")]


def test_whole_file_errors(tmp_path: Path) -> None:
    no_metric = _csv(tmp_path, [{k: v for k, v in GOOD.items() if k != "metric"}], "a.csv")
    with pytest.raises(MeasurementError, match=r"a\.csv: missing required column\(s\) metric"):
        read_measurements(no_metric)
    typo = _csv(tmp_path, [{**GOOD, "folio_kib": "4"}], "b.csv")
    with pytest.raises(MeasurementError, match=r"b\.csv: unknown column\(s\) folio_kib"):
        read_measurements(typo)
    data, _ = read_measurements(_csv(tmp_path, [{**GOOD, "x_host": "h1"}], "c.csv"), strict=True)
    assert len(data) == 1
    with pytest.raises(MeasurementError, match="no such file"):
        read_measurements(tmp_path / "missing.csv")
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(MeasurementError, match="unknown format"):
        read_measurements(tmp_path / "d.json")


def test_parquet_round_trip_and_row_numbers(tmp_path: Path) -> None:
    rows = pd.DataFrame([GOOD, {**GOOD, "unit": "parsecs"}, {**GOOD, "folio_kb": "2048"}])
    rows["value"] = pd.to_numeric(rows["value"])
    p = tmp_path / "m.parquet"
    rows.to_parquet(p, index=False)
    data, rep = read_measurements(p)
    assert rep.kept == 2 and rep.skipped[0][:2] == (2, "unit")  # Parquet: first data row is row 1
    out = tmp_path / "again.csv"
    write_measurements(data, out)
    again, rep2 = read_measurements(out, strict=True)
    assert rep2.kept == 2
    assert again["value"].tolist() == pytest.approx(data["value"].tolist())
    assert again["unit"].tolist() == ["B/s", "B/s"]


def test_user_files_add_to_the_shipped_set(tmp_path: Path) -> None:
    p = _csv(tmp_path, [GOOD])
    data, reports = load_measurements([p])
    assert [r.path for r in reports] == [str(SHIPPED_PATH), str(p)]
    assert (data["file"] == str(p)).sum() == 1
    only, _ = load_measurements([p], include_shipped=False)
    assert len(only) == 1


def _one_bad_row(tmp_path, value: str, unit: str = "B/s"):
    """A file whose third data row (line 4 of the CSV) is the bad one."""
    head = "source,profile,date,trust,metric,value,unit,folio_kb\n"
    good = "s,epyc-zen3-2s,2024-01-01,A,bytes_per_s,{v},B/s,4\n"
    p = tmp_path / "m.csv"
    p.write_text(
        head
        + good.format(v="1e9")
        + good.format(v="2e9").replace(",4\n", ",16\n")
        + f"s,epyc-zen3-2s,2024-01-01,A,bytes_per_s,{value},{unit},64\n"
    )
    return p


@pytest.mark.parametrize(
    ("value", "unit", "why"),
    [("0", "B/s", "zero"), ("0.0", "GB/s", "zero"), ("1e305", "GiB/s", "infinite after conversion")],
)
def test_zero_and_overflowing_values_are_refused_with_the_row_of_the_file(tmp_path, value, unit, why):
    from models.measurements import MeasurementError, load_measurements, read_measurements

    p = _one_bad_row(tmp_path, value, unit)
    with pytest.raises(MeasurementError) as exc:
        read_measurements(p, strict=True)
    assert str(exc.value).startswith(f"{p}: row 4, column value: {why}")
    # behind the shipped dataset, the row number is still the row of the file, not of the combined table
    with pytest.raises(MeasurementError) as exc:
        load_measurements([p], strict=True)
    assert f"{p}: row 4, column value" in str(exc.value)
    data, reports = load_measurements([p])
    assert (
        reports[-1].skipped == [(4, "value", reports[-1].skipped[0][2])] and why in reports[-1].skipped[0][2]
    )
    assert len(data[data["file"] == str(p)]) == 2


def test_kernel_column_must_be_major_minor(tmp_path):
    from models.measurements import MeasurementError, read_measurements

    p = tmp_path / "k.csv"
    p.write_text(
        "source,profile,date,trust,metric,value,unit,kernel\n"
        "s,epyc-zen3-2s,2024-01-01,A,bytes_per_s,1e9,B/s,6.8\n"
        "s,epyc-zen3-2s,2024-01-01,A,pages_per_s,1e5,pages/s,6.8.1\n"
    )
    with pytest.raises(MeasurementError, match=r"row 3, column kernel: must be"):
        read_measurements(p, strict=True)


def test_shipped_curation_rebuilds_the_csv_exactly(tmp_path):
    import subprocess
    import sys

    from models.measurements import SHIPPED_PATH

    script = Path(__file__).resolve().parents[1] / "scripts" / "curate_measurements.py"
    src = next(
        (
            p / "shared/data/published_measurements.csv"
            for p in script.parents
            if (p / "shared/data/published_measurements.csv").exists()
        ),
        None,
    )
    if src is None:
        pytest.skip("shared/data/published_measurements.csv is not beside this checkout")
    out = tmp_path / "m.csv"
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True)
    assert out.read_bytes() == SHIPPED_PATH.read_bytes()


def test_amd_rfc_v2_rows_use_the_testing_batch_limit():
    from models.measurements import load_measurements

    data, _ = load_measurements()
    v2 = data[data["source"] == "garg-rfc-v2-2025-03"]
    assert len(v2) > 100
    # [PATCH RFC V2 9/9] sets NR_MAX_BATCHED_MIGRATION = HPAGE_PUD_NR for testing
    assert set(v2["batch_limit_pages"]) == {262144}
    assert (data["kernel"].str.match(r"^\d+\.\d+$")).all()


def test_validate_uses_a_profile_written_beside_the_measurements(tmp_path, monkeypatch, capsys):
    """`foliotune measure --out DIR` writes DIR/local.toml beside DIR/measurements-local.csv:
    validate scores those rows without FOLIOTUNE_PROFILE_PATH (an unknown profile otherwise)."""
    from app.cli import main
    from models.profiles import PROFILE_DIR, dump_profile_toml, load_profile_file

    monkeypatch.setenv("FOLIOTUNE_PROFILE_PATH", "")  # restored after the test, whatever validate sets
    d = tmp_path / "here"
    d.mkdir()
    prof = load_profile_file(PROFILE_DIR / "epyc-zen3-2s.toml")
    text = dump_profile_toml(prof).replace('name = "epyc-zen3-2s"', 'name = "beside-test"')
    (d / "beside-test.toml").write_text(text)
    rows = d / "measurements-beside-test.csv"
    rows.write_text(
        "source,profile,date,trust,folio_kb,n_folios,kernel,metric,value,unit\n"
        "mine,beside-test,2026-11-26,A,4,32768,6.18,bytes_per_s,2.1e9,B/s\n"
        "mine,beside-test,2026-11-26,A,2048,64,6.18,bytes_per_s,5.7e9,B/s\n"
    )
    code = 0
    try:
        main(
            [
                "validate",
                "--measurements",
                str(rows),
                "--no-shipped",
                "--model",
                "analytic",
                "--out",
                str(tmp_path / "v"),
            ]
        )
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 0, err
    summary = pd.read_csv(tmp_path / "v" / "validation.csv")
    assert "mine" in set(summary["source"])
