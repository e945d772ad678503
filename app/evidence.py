"""The Evidence page's data: measurements over the model, residuals, in-sample errors; uploads.

Measured rows (shipped, plus a session's upload) are compared with the analytic model and the
regression; kernel outputs become measured quantities through
:func:`models.evaluate.measured_metric`. Uploads are parsed in memory within bounds on bytes (as sent
and decoded) and rows, then validated like any measurement file.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.recommend import CHOICE, WORKLOAD
from app.regression_source import THROUGHPUT_METRIC, RegressionSource
from models.errors import UserError
from models.evaluate import evaluate, measured_metric
from models.measurements import load_measurements, validate_table
from models.params import PARAMETERS

#: Most data rows an upload may hold (the shipped measurements are a few hundred rows; the
#: session's regression is refitted on them while the user waits).
MAX_UPLOAD_ROWS = 10_000
#: A Parquet upload may decode to at most this multiple of the upload limit (Parquet compresses
#: repetitive tables a thousandfold: 27 KB held 10^6 rows).
MAX_DECODED_FACTOR = 4


@lru_cache(maxsize=1)
def shipped_measurements() -> pd.DataFrame:
    """The measurements shipped with foliotune (loaded once)."""
    data, _ = load_measurements()
    return data


def _decoded_bytes(table: pa.Table) -> int:
    """Bytes ``table`` takes once decoded (dictionary columns counted per row, not per entry)."""
    total = 0
    for column in table.columns:
        for chunk in column.chunks:
            if pa.types.is_dictionary(chunk.type):
                if pa.types.is_string(chunk.type.value_type) or pa.types.is_binary(chunk.type.value_type):
                    lengths = pc.binary_length(chunk.dictionary)
                    total += int(pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0) + 8 * len(chunk)
                else:
                    total += chunk.type.value_type.bit_width // 8 * len(chunk)
            else:
                total += chunk.nbytes
    return total


def _read_parquet(content: bytes, label: str, max_rows: int, max_decoded: int) -> pd.DataFrame:
    """A Parquet upload as a table, refused before decoding when it has too many rows or bytes."""
    pf = pq.ParquetFile(io.BytesIO(content))
    md = pf.metadata
    if md.num_rows > max_rows:
        raise UserError(f"{label}: {md.num_rows:,} rows is above the upload limit of {max_rows:,} rows")
    stated = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    too_big = f"{label}: decodes to more than {max_decoded:,} bytes (the limit for an upload)"
    if stated > max_decoded:
        raise UserError(too_big)
    strings = [
        f.name for f in pf.schema_arrow if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
    ]
    # repeated strings stay dictionary-encoded until their decoded size is counted
    table = pq.ParquetFile(io.BytesIO(content), read_dictionary=strings).read()
    if _decoded_bytes(table) > max_decoded:
        raise UserError(too_big)
    return table.to_pandas()


def parse_measurement_upload(
    content: bytes, filename: str, max_bytes: int, max_rows: int = MAX_UPLOAD_ROWS
) -> tuple[pd.DataFrame, str]:
    """Validate an uploaded measurement file held in memory; returns good rows and a summary.

    ``filename`` is only a label and decides CSV or Parquet by its suffix; nothing is opened by name.
    At most ``max_bytes`` bytes as sent, ``MAX_DECODED_FACTOR`` times that once decoded, and
    ``max_rows`` data rows; a file above a bound is refused before it is decoded.
    """
    if len(content) > max_bytes:
        raise UserError(
            f"{filename}: {len(content):,} bytes is above the upload limit of {max_bytes:,} bytes"
        )
    if not content.strip():
        raise UserError(f"{filename}: empty file")
    label = Path(filename).name or "upload"
    suffix = Path(label).suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            raw = _read_parquet(content, label, max_rows, MAX_DECODED_FACTOR * max_bytes)
            first = 1
        else:
            lines = content.count(b"\n") + (not content.endswith(b"\n"))
            if lines - 1 > max_rows:
                raise UserError(f"{label}: {lines - 1:,} rows is above the upload limit of {max_rows:,} rows")
            raw = pd.read_csv(
                io.BytesIO(content), dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True
            )
            first = 2
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"{label}: not a readable CSV or Parquet file ({' '.join(str(exc).split())[:160]})"
        ) from None
    rows, report = validate_table(raw, label, strict=False, first_row=first)
    if rows.empty:
        raise UserError(f"{label}: no valid rows ({report.summary()})")
    return rows, report.summary()


EVIDENCE_X: tuple[str, ...] = ("batch_limit_pages", "folio_kb", "copy_threads", "n_folios", "target_cpus")
GROUP_COLUMNS: tuple[str, ...] = (
    "copy_engine",
    "copy_threads",
    "folio_kb",
    "batch_limit_pages",
    "n_folios",
    "mode",
)


def _analytic(points: pd.DataFrame) -> pd.DataFrame:
    # every parameter the measured rows state (kernel, folio_mix, ... too), not only the core workload
    cols = [c for c in points.columns if c in PARAMETERS]
    return evaluate(points[cols].reset_index(drop=True), "analytic", on_invalid="mark")


def evidence_metrics(meas: pd.DataFrame, profile: str) -> list[str]:
    rows = meas[(meas["profile"] == profile) & meas["predicted"].astype(bool)]
    return sorted(rows["metric"].unique().tolist())


def evidence_x_options(meas: pd.DataFrame, profile: str, metric: str) -> list[str]:
    """Parameters that vary among the measured rows (candidates for the x axis), most values first."""
    rows = meas[(meas["profile"] == profile) & (meas["metric"] == metric)]
    opts = [c for c in EVIDENCE_X if rows[c].nunique() > 1]
    return sorted(opts, key=lambda c: -rows[c].nunique()) or ["batch_limit_pages"]


def _group_label(row: Mapping[str, Any], cols: Sequence[str]) -> str:
    parts = []
    for c in cols:
        v = row[c]
        if c == "copy_engine":
            parts.append(f"{v}×{row['copy_threads']}" if "copy_threads" in cols else str(v))
        elif c == "copy_threads" and "copy_engine" in cols:
            continue
        elif c == "copy_threads":
            parts.append(f"{v} thr")
        elif c == "folio_kb":
            parts.append(f"{v} KiB")
        elif c == "batch_limit_pages":
            parts.append(f"batch {v}")
        elif c == "n_folios":
            parts.append(f"{v} folios")
        else:
            parts.append(f"{c}={v}")
    return " · ".join(parts) or "all"


MAX_GROUPS = 6


def evidence_tables(
    meas: pd.DataFrame, profile: str, metric: str, x: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Measured points and analytic curves for one profile and metric; returns (points, curves, x).

    Rows are grouped by the other parameters that vary; the ``MAX_GROUPS`` largest groups are shown.
    """
    rows = meas[(meas["profile"] == profile) & (meas["metric"] == metric)].reset_index(drop=True)
    empty = pd.DataFrame(columns=["x", "predicted", "group"])
    if rows.empty:
        return rows.assign(x=[], group=[]), empty, x or "batch_limit_pages"
    opts = evidence_x_options(meas, profile, metric)
    x = x if x in opts else opts[0]
    others = [c for c in GROUP_COLUMNS if c != x and rows[c].nunique() > 1]
    rows["group"] = [_group_label({str(k): v for k, v in r.items()}, others) for r in rows.to_dict("records")]
    top = rows["group"].value_counts().index[:MAX_GROUPS]
    rows = rows[rows["group"].isin(top)].reset_index(drop=True)
    rows["x"] = rows[x]
    curves = []
    xs_all = np.unique(rows[x].to_numpy(dtype=float))
    grid = np.unique(np.concatenate([xs_all, np.geomspace(max(xs_all.min(), 1e-9), xs_all.max(), 24)]))
    grid = np.unique(np.round(grid))
    if x == "folio_kb":
        grid = np.unique(2 ** np.round(np.log2(grid)))
    for grp, g in rows.groupby("group", sort=True):
        first = g.iloc[0]
        pts = pd.DataFrame({c: first[c] for c in ("profile", *CHOICE, *WORKLOAD)}, index=range(len(grid)))
        pts[x] = grid.astype(int)
        out = _analytic(pts)
        ok = out["infeasible"].astype(str).to_numpy() == ""
        curves.append(
            pd.DataFrame({"x": grid[ok], "predicted": measured_metric(out, metric, out)[ok], "group": grp})
        )
    return rows, (pd.concat(curves, ignore_index=True) if curves else empty), x


def residual_table(meas: pd.DataFrame, regression: RegressionSource | None = None) -> pd.DataFrame:
    """log10(measured / predicted) per measured row: analytic for every metric, regression for throughput."""
    rows = meas[meas["predicted"].astype(bool)].reset_index(drop=True)
    if rows.empty:
        return pd.DataFrame(columns=["source", "profile", "metric", "model", "log10_ratio"])
    out = _analytic(rows)
    pred = measured_metric(out, rows["metric"].to_numpy(dtype=object), out)
    value = rows["value"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log10(value / pred)
    frames = [
        pd.DataFrame(
            {
                "source": rows["source"],
                "profile": rows["profile"],
                "metric": rows["metric"],
                "model": "analytic",
                "log10_ratio": ratio,
            }
        )
    ]
    predict = regression.predict if regression is not None else None
    if predict is not None:
        sel = (rows["metric"] == THROUGHPUT_METRIC).to_numpy()
        if sel.any():
            try:
                rp = predict(rows[sel][["profile", *CHOICE, *WORKLOAD]].reset_index(drop=True))
                with np.errstate(divide="ignore", invalid="ignore"):
                    r2 = np.log10(value[sel] / measured_metric(rp, THROUGHPUT_METRIC, rp))
                frames.append(
                    pd.DataFrame(
                        {
                            "source": rows["source"][sel].to_numpy(),
                            "profile": rows["profile"][sel].to_numpy(),
                            "metric": THROUGHPUT_METRIC,
                            "model": "regression",
                            "log10_ratio": r2,
                        }
                    )
                )
            except Exception:  # the regression is optional: its residuals are left out
                pass
    res = pd.concat(frames, ignore_index=True)
    return res[np.isfinite(res["log10_ratio"].to_numpy(dtype=float))].reset_index(drop=True)


def validation_table(resid: pd.DataFrame) -> pd.DataFrame:
    """Per source and model, in sample: rows, median and 90th-percentile absolute error (%).

    The quick table shown while :meth:`app.validation.ValidationQueue.summary` (cross-validated) runs.
    """
    if resid.empty:
        return pd.DataFrame(columns=["source", "model", "rows", "median |error| %", "p90 |error| %"])
    err = (10 ** resid["log10_ratio"].abs() - 1) * 100
    t = (
        resid.assign(err=err)
        .groupby(["source", "model"], sort=True)["err"]
        .agg(rows="size", median="median", p90=lambda s: float(np.quantile(s, 0.9)))
        .reset_index()
        .rename(columns={"median": "median |error| %", "p90": "p90 |error| %"})
    )
    t["median |error| %"] = t["median |error| %"].round(1)
    t["p90 |error| %"] = t["p90 |error| %"].round(1)
    return t
