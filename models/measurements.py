"""Measured results: the schema, the shipped curated dataset and a validating loader.

The schema is documented in ``models/data/MEASUREMENTS.md`` (one row per measured configuration
and metric; model parameters of DESIGN.md §2; value and standard deviation in SI units; provenance
columns). :func:`load_measurements` reads the shipped dataset and/or users' CSV or Parquet files,
validates every row and returns one table. Bad rows are skipped and counted by default; with
``strict=True`` the first bad row refuses its file with ``FILE: row N, column C: why``.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import UserError
from models.params import NUMERIC_PARAMETERS, PARAMETERS, check_points, complete_points
from models.profiles import profile_names

SCHEMA_VERSION = 1
DATA_DIR = Path(__file__).with_name("data")
SHIPPED_PATH = DATA_DIR / "measurements.csv"

PROVENANCE_COLUMNS: tuple[str, ...] = ("source", "reference", "machine", "profile", "date", "trust")
PARAMETER_COLUMNS: tuple[str, ...] = tuple(p for p in PARAMETERS if p != "profile")
VALUE_COLUMNS: tuple[str, ...] = ("variant", "metric", "value", "sd", "unit", "notes")
#: Kernel release the measurement ran on (or the cycle a patch series was posted against), "MAJOR.MINOR".
#: A model parameter once the model takes one; until then a column of the schema only.
KERNEL_COLUMNS: tuple[str, ...] = () if "kernel" in PARAMETER_COLUMNS else ("kernel",)
#: Columns of a measurement file, in file order.
COLUMNS: tuple[str, ...] = PROVENANCE_COLUMNS + PARAMETER_COLUMNS + KERNEL_COLUMNS + VALUE_COLUMNS
REQUIRED: tuple[str, ...] = ("source", "profile", "date", "trust", "metric", "value", "unit")
TRUST_GRADES: tuple[str, ...] = ("A", "B", "C")
#: Extra columns added by the loader.
LOADED_EXTRA: tuple[str, ...] = ("file", "file_row", "predicted")

_RATE = {
    "B/s": 1.0,
    "kB/s": 1e3,
    "MB/s": 1e6,
    "GB/s": 1e9,
    "KiB/s": 1024.0,
    "MiB/s": 1024.0**2,
    "GiB/s": 1024.0**3,
}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_COUNT = {"count": 1.0}
_FRACTION = {"1": 1.0, "%": 0.01}


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # canonical SI unit
    accepted: dict[str, float]  # unit -> factor to SI
    predicted: bool  # the cost model predicts it
    meaning: str


def _m(name: str, unit: str, accepted: dict[str, float], predicted: bool, meaning: str) -> Metric:
    return Metric(name, unit, accepted, predicted, meaning)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _m("bytes_per_s", "B/s", _RATE, True, "bytes migrated / wall time of the call"),
        _m("pages_per_s", "pages/s", {"pages/s": 1.0}, True, "base pages migrated per second"),
        _m("time_s", "s", _TIME, True, "wall time of one call"),
        _m("time_per_page_s", "s", _TIME, True, "wall time per base page moved"),
        _m("cpu_time_s", "s", _TIME, True, "CPU time of the call"),
        _m("remote_cpu_time_s", "s", _TIME, True, "CPU time on flush targets"),
        _m("window_mean_s", "s", _TIME, True, "mean unmapped window per folio"),
        _m("window_p99_s", "s", _TIME, True, "p99 unmapped window per folio"),
        _m("stall_p99_s", "s", _TIME, True, "p99 application stall"),
        _m("flush_rounds", "count", _COUNT, True, "TLB flush rounds"),
        _m("ipis", "count", _COUNT, True, "flush IPIs"),
        _m("failed_folios", "count", _COUNT, True, "folios not migrated"),
        _m("passes", "count", _COUNT, True, "passes per batch"),
        _m("copy_bytes_per_s", "B/s", _RATE, False, "copy-only throughput"),
        _m("copy_time_per_page_s", "s", _TIME, False, "copy time per base page"),
        _m("copy_fraction", "1", _FRACTION, False, "fraction of migration time spent copying"),
        _m("cpu_cycles_fraction", "1", _FRACTION, False, "perf share of all cycles in `variant`"),
        _m("throughput_ratio", "1", {**_FRACTION, "x": 1.0}, False, "throughput relative to a baseline"),
        _m("ipi_ratio", "1", _FRACTION, False, "flush IPIs relative to a baseline"),
        _m("tlb_shootdown_s", "s", _TIME, False, "time of one shootdown round to target_cpus CPUs"),
        _m("tlb_shootdown_irqs", "count", _COUNT, False, "shootdown interrupts per round"),
    )
}
#: Metrics the cost model predicts (scored by fit, calibrate and validate).
MODEL_METRICS: tuple[str, ...] = tuple(k for k, m in METRICS.items() if m.predicted)

_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?$")
_KERNEL = re.compile(r"^[1-9]\d*\.\d+$")


class MeasurementError(UserError):
    """A measurement file that cannot be used; the message names the file, row and column."""


@dataclass
class LoadReport:
    """What happened to one file: rows read, rows kept, and why the others were skipped."""

    path: str
    rows: int = 0
    kept: int = 0
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # (row, column, why)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def reasons(self) -> Counter[str]:
        return Counter(f"column {col}: {why}" for _row, col, why in self.skipped)

    def summary(self, max_reasons: int = 5) -> str:
        """One line per file: counts, then the commonest reasons with their first row."""
        head = f"{self.path}: {self.kept} of {self.rows} rows kept"
        if not self.skipped:
            return head
        first: dict[str, int] = {}
        for row, col, why in self.skipped:
            first.setdefault(f"column {col}: {why}", row)
        parts = [
            f"{n} × {reason} (first: row {first[reason]})"
            for reason, n in self.reasons().most_common(max_reasons)
        ]
        more = len(self.reasons()) - max_reasons
        tail = f"; {more} more reasons" if more > 0 else ""
        return f"{head}, {self.n_skipped} skipped: " + "; ".join(parts) + tail


def _read_table(path: Path) -> tuple[pd.DataFrame, int]:
    """Read a CSV or Parquet file as strings/objects; return the table and the first data row number."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True)
            return df, 2
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), 1
    except FileNotFoundError:
        raise MeasurementError(f"{path}: no such file") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise MeasurementError(f"{path}: cannot read ({' '.join(str(exc).split())[:200]})") from None
    raise MeasurementError(f"{path}: unknown format {suffix!r} (use .csv or .parquet)")


def _text(col: pd.Series) -> pd.Series:
    """Strings, stripped; missing cells become ''."""
    return col.astype(object).where(col.notna(), "").astype(str).str.strip()


def validate_table(
    raw: pd.DataFrame, where: str, *, strict: bool = False, first_row: int = 2
) -> tuple[pd.DataFrame, LoadReport]:
    """Validate a raw measurement table; return the good rows (SI, completed) and a report.

    ``first_row`` is the number shown for the first data row (2 for CSV, 1 for Parquet).
    """
    report = LoadReport(path=where, rows=len(raw))
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise MeasurementError(f"{where}: missing required column(s) {', '.join(missing)}")
    unknown = [c for c in raw.columns if c not in COLUMNS and not str(c).startswith("x_")]
    if unknown:
        raise MeasurementError(
            f"{where}: unknown column(s) {', '.join(map(str, unknown))} (see models/data/MEASUREMENTS.md; "
            "prefix extra columns with x_)"
        )
    df = raw.reset_index(drop=True).copy()
    n = len(df)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    reason_col = np.full(n, "", dtype=object)
    reason_why = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, column: str, why: str | np.ndarray) -> None:
        new = np.asarray(mask, dtype=bool) & (reason_col == "")
        if new.any():
            reason_col[new] = column
            reason_why[new] = why if isinstance(why, str) else why[new]

    text = {c: _text(df[c]) for c in ("source", "profile", "date", "trust", "metric", "unit", "variant")}
    flag((text["source"] == "").to_numpy(), "source", "empty")
    metric = text["metric"].to_numpy()
    known_metric = np.isin(metric, list(METRICS))
    flag(~known_metric, "metric", "unknown metric (see models/data/MEASUREMENTS.md)")
    unit = text["unit"].to_numpy()
    factor = np.full(n, np.nan)
    for i in range(n):
        if known_metric[i]:
            factor[i] = METRICS[metric[i]].accepted.get(unit[i], np.nan)
    bad_unit = known_metric & np.isnan(factor)
    flag(
        bad_unit,
        "unit",
        np.array(
            [
                f"unit {u!r} not accepted for {m} (accepted: {', '.join(METRICS[m].accepted)})" if b else ""
                for u, m, b in zip(unit, metric, bad_unit, strict=True)
            ],
            dtype=object,
        ),
    )
    value = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=np.float64)
    flag(_text(df["value"]).to_numpy() == "", "value", "empty")
    flag(~np.isfinite(value), "value", "not a finite number")
    flag(value < 0, "value", "negative")
    # Every metric is scored on a log scale (fit, calibrate, validate): 0 has no logarithm.
    flag(value == 0, "value", "zero (metrics are compared on a log scale; leave the row out instead)")
    with np.errstate(over="ignore", invalid="ignore"):
        flag(
            ~np.isfinite(value * factor) & np.isfinite(value) & np.isfinite(factor),
            "value",
            "infinite after conversion to SI",
        )
    sd_text = _text(df["sd"]).to_numpy()
    sd = pd.to_numeric(df["sd"], errors="coerce").to_numpy(dtype=np.float64)
    flag((sd_text != "") & ~np.isfinite(sd), "sd", "not a finite number")
    flag((sd_text != "") & (sd < 0), "sd", "negative")
    flag(~np.isin(text["trust"].to_numpy(), TRUST_GRADES), "trust", "must be A, B or C")
    flag(~text["date"].str.match(_DATE).to_numpy(), "date", "must be YYYY-MM-DD or YYYY-MM")
    if KERNEL_COLUMNS:
        kern = _text(df["kernel"])
        flag(((kern != "") & ~kern.str.match(_KERNEL)).to_numpy(), "kernel", "must be MAJOR.MINOR (e.g. 6.3)")
    known_profiles = set(profile_names())
    prof = text["profile"].to_numpy()
    flag(~np.isin(prof, list(known_profiles)), "profile", "unknown profile")

    # Parameters: fill defaults from the profile, then the model's own validation.
    ok_prof = np.isin(prof, list(known_profiles))
    params = pd.DataFrame(index=df.index)
    for c in PARAMETER_COLUMNS:
        t = _text(df[c])
        if c in NUMERIC_PARAMETERS:
            num = pd.to_numeric(t.where(t != "", None), errors="coerce").astype(np.float64)
            flag(((t != "") & num.isna()).to_numpy(), c, "not a number")
            params[c] = num
        else:
            params[c] = t.where(t != "", None).astype(object)
    params.insert(0, "profile", np.where(ok_prof, prof, sorted(known_profiles)[0] if known_profiles else ""))
    completed = pd.DataFrame(index=df.index)
    if n and known_profiles:
        completed = complete_points(params)
        _arrays, reasons = check_points(completed)
        reasons = np.asarray(reasons, dtype=object)
        bad = (reasons != "") & ok_prof
        cols = np.array(
            [str(r).split(":", 1)[0].removeprefix("column ").strip() for r in reasons], dtype=object
        )
        whys = np.array([str(r).split(":", 1)[-1].strip() for r in reasons], dtype=object)
        for c in np.unique(cols[bad]):
            m = bad & (cols == c)
            flag(m, str(c), whys)

    good = reason_col == ""
    # Duplicates among otherwise good rows: same source, variant, metric, profile and parameters.
    if good.any() and len(completed):
        key = pd.DataFrame(
            {
                "source": text["source"],
                "variant": text["variant"],
                "metric": text["metric"],
                **{c: completed[c].astype(str) for c in PARAMETERS},
            }
        )
        key = key[good]
        dup = key.duplicated(keep="first")
        if dup.any():
            first_of = key.reset_index().groupby(list(key.columns), sort=False)["index"].transform("first")
            first_of.index = key.index
            dup_idx = key.index[dup.to_numpy()]
            dmask = np.zeros(n, dtype=bool)
            dmask[dup_idx] = True
            whys = np.full(n, "", dtype=object)
            for j in dup_idx:
                whys[j] = f"duplicate of row {int(first_of.loc[j]) + first_row}"
            flag(dmask, "metric", whys)
            good = reason_col == ""

    bad_rows = np.flatnonzero(~good)
    for k in bad_rows:
        report.skipped.append((int(k) + first_row, str(reason_col[k]), str(reason_why[k])))
    if strict and len(bad_rows):
        row, col, why = report.skipped[0]
        more = f" ({len(bad_rows) - 1} more bad rows)" if len(bad_rows) > 1 else ""
        raise MeasurementError(f"{where}: row {row}, column {col}: {why}{more}")

    out = pd.DataFrame(
        {
            "source": text["source"],
            "reference": _text(df["reference"]),
            "machine": _text(df["machine"]),
            "profile": text["profile"],
            "date": text["date"],
            "trust": text["trust"],
        }
    )
    for c in PARAMETER_COLUMNS:
        out[c] = completed[c] if len(completed) else df[c]
    if KERNEL_COLUMNS:
        out["kernel"] = _text(df["kernel"])
    out["variant"] = text["variant"]
    out["metric"] = text["metric"]
    with np.errstate(invalid="ignore"):
        out["value"] = value * factor
        out["sd"] = np.where(sd_text != "", sd * factor, np.nan)
    out["unit"] = [METRICS[m].unit if m in METRICS else u for m, u in zip(metric, unit, strict=True)]
    out["notes"] = _text(df["notes"])
    out["file"] = where
    out["file_row"] = np.arange(n, dtype=np.int64) + first_row
    out["predicted"] = [bool(m in METRICS and METRICS[m].predicted) for m in metric]
    out = out[good].reset_index(drop=True)
    for c in ("folio_kb", "n_folios", "batch_limit_pages", "copy_threads", "target_cpus", "mapcount"):
        out[c] = pd.to_numeric(out[c]).astype(np.int64)
    for c in ("busy_prob", "access_rate_hz"):
        out[c] = pd.to_numeric(out[c]).astype(np.float64)
    for c in ("copy_engine", "mode"):
        out[c] = out[c].astype(str).str.strip().str.lower()
    report.kept = len(out)
    return out, report


def read_measurements(path: str | Path, *, strict: bool = False) -> tuple[pd.DataFrame, LoadReport]:
    """Read and validate one measurement file (CSV or Parquet)."""
    p = Path(path)
    raw, first_row = _read_table(p)
    return validate_table(raw, str(p), strict=strict, first_row=first_row)


def load_measurements(
    paths: Iterable[str | Path] | None = None, *, strict: bool = False, include_shipped: bool = True
) -> tuple[pd.DataFrame, list[LoadReport]]:
    """The shipped dataset (unless ``include_shipped=False``) plus the given files, validated."""
    files: list[Path] = [SHIPPED_PATH] if include_shipped else []
    files += [Path(p) for p in (paths or [])]
    if not files:
        raise MeasurementError("no measurement files given")
    tables, reports = [], []
    for f in files:
        t, r = read_measurements(f, strict=strict)
        tables.append(t)
        reports.append(r)
    data = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
    return data, reports


def model_rows(data: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows whose metric the model predicts (optionally only ``metrics``)."""
    keep = np.array(data["predicted"], dtype=bool)
    if metrics is not None:
        keep &= data["metric"].isin(list(metrics)).to_numpy()
    return data[keep].reset_index(drop=True)


def data_hash(data: pd.DataFrame) -> str:
    """SHA-256 of the scored content of a loaded table (provenance of fitted models)."""
    cols = ["source", "profile", *PARAMETER_COLUMNS, "variant", "metric", "value", "sd"]
    csv = data[[c for c in cols if c in data.columns]].to_csv(index=False, float_format="%.10g")
    return hashlib.sha256(csv.encode()).hexdigest()


def write_measurements(data: pd.DataFrame, path: str | Path) -> None:
    """Write rows in the schema (CSV or Parquet by suffix); extra loader columns are dropped."""
    p = Path(path)
    cols = [c for c in COLUMNS if c in data.columns] + [c for c in data.columns if str(c).startswith("x_")]
    out = data[cols]
    if p.suffix.lower() in (".parquet", ".pq"):
        out.to_parquet(p, index=False)
    else:
        out.to_csv(p, index=False)


__all__ = [
    "COLUMNS",
    "METRICS",
    "MODEL_METRICS",
    "REQUIRED",
    "SCHEMA_VERSION",
    "SHIPPED_PATH",
    "LoadReport",
    "MeasurementError",
    "data_hash",
    "load_measurements",
    "model_rows",
    "read_measurements",
    "validate_table",
    "write_measurements",
]
