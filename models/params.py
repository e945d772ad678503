"""Model parameters and outputs: names, units, defaults and validation (DESIGN.md §2).

Parameters carry their unit in their name. Inside the code every quantity is SI (seconds, bytes,
hertz); KiB appears only in ``folio_kb`` because that is how kernel engineers name folio sizes.

Validation is vectorized: :func:`check_points` returns, for each row, ``""`` when the row is valid
or a one-line reason naming the column. Front ends turn the first reason into an error (``predict``)
or count the rows as infeasible (``sweep``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.errors import UserError
from models.profiles import HardwareProfile, get_profile, profile_names

ENGINES: tuple[str, ...] = ("cpu", "mt-cpu", "dma", "dsa")
MODES: tuple[str, ...] = ("async", "sync")

#: Parameter columns of a point, in contract order (DESIGN.md §2).
PARAMETERS: tuple[str, ...] = (
    "profile",
    "folio_kb",
    "n_folios",
    "batch_limit_pages",
    "copy_engine",
    "copy_threads",
    "target_cpus",
    "mapcount",
    "busy_prob",
    "access_rate_hz",
    "mode",
)
NUMERIC_PARAMETERS: tuple[str, ...] = (
    "folio_kb",
    "n_folios",
    "batch_limit_pages",
    "copy_threads",
    "target_cpus",
    "mapcount",
    "busy_prob",
    "access_rate_hz",
)
INTEGER_PARAMETERS: tuple[str, ...] = (
    "folio_kb",
    "n_folios",
    "batch_limit_pages",
    "copy_threads",
    "target_cpus",
    "mapcount",
)

#: Output columns (contract), SI units.
OUTPUTS: tuple[str, ...] = (
    "time_s",
    "pages_per_s",
    "bytes_per_s",
    "flush_rounds",
    "ipis",
    "cpu_time_s",
    "remote_cpu_time_s",
    "window_mean_s",
    "window_p99_s",
    "stall_p99_s",
    "failed_folios",
    "passes",
)
#: Derived ratio columns against the unbatched path (batch_limit_pages = 1), same other parameters.
DERIVED: tuple[str, ...] = ("ipi_reduction", "speedup")

UNITS: dict[str, str] = {
    "folio_kb": "KiB",
    "n_folios": "folios",
    "batch_limit_pages": "base pages",
    "copy_threads": "threads/channels",
    "target_cpus": "CPUs",
    "mapcount": "page tables",
    "busy_prob": "probability",
    "access_rate_hz": "1/s per folio",
    "time_s": "s",
    "pages_per_s": "base pages/s",
    "bytes_per_s": "B/s",
    "flush_rounds": "rounds",
    "ipis": "IPIs",
    "cpu_time_s": "s",
    "remote_cpu_time_s": "s",
    "window_mean_s": "s",
    "window_p99_s": "s",
    "stall_p99_s": "s",
    "failed_folios": "folios",
    "passes": "passes per batch",
}


class PointError(UserError):
    """A point (row) that the model cannot evaluate; the message names the row and column."""


def defaults_for(profile: HardwareProfile) -> dict[str, object]:
    """Workload defaults of a profile (used for columns a points file leaves out)."""
    return {
        "profile": profile.name,
        "folio_kb": profile.page_kb,
        "n_folios": profile.default_n_folios,
        "batch_limit_pages": profile.default_batch_limit_pages,
        "copy_engine": "cpu",
        "copy_threads": 1,
        "target_cpus": min(profile.default_target_cpus, profile.cpus),
        "mapcount": 1,
        "busy_prob": 0.0,
        "access_rate_hz": profile.default_access_rate_hz,
        "mode": "sync",
    }


def complete_points(
    points: pd.DataFrame, default_profile: str | None = None, row_offset: int = 1
) -> pd.DataFrame:
    """Return ``points`` with every parameter column present, missing ones taken from the profile.

    Cells that are empty (NaN) in a present column are filled the same way. Column order is the
    input's, followed by the added parameters in contract order.
    """
    out = points.copy()
    if default_profile is None:
        from models.profiles import DEFAULT_PROFILE

        default_profile = DEFAULT_PROFILE
    if "profile" not in out.columns:
        out["profile"] = default_profile
    out["profile"] = out["profile"].astype(object).where(~out["profile"].isna(), default_profile)
    for name in set(out["profile"]):
        if name not in profile_names():
            row = int(np.flatnonzero(out["profile"].to_numpy() == name)[0]) + row_offset
            raise PointError(
                f"row {row}, column profile: unknown profile {name!r} (known: {', '.join(profile_names())})"
            )
    for col in PARAMETERS[1:]:
        if col not in out.columns:
            out[col] = np.nan if col in NUMERIC_PARAMETERS else None
    names = out["profile"].unique()
    for col in PARAMETERS[1:]:
        missing = out[col].isna()
        if not missing.any():
            continue
        if len(names) == 1:
            out[col] = out[col].where(~missing, defaults_for(get_profile(str(names[0])))[col])
            continue
        fill = out["profile"].map({nm: defaults_for(get_profile(str(nm)))[col] for nm in names})
        out[col] = out[col].where(~missing, fill)
    return out


@dataclass(frozen=True)
class PointArrays:
    """Typed, validated parameter arrays of a set of points (one entry per point)."""

    profile_index: np.ndarray  # int64, index into models.profiles.profile_names()
    folio_kb: np.ndarray  # float64
    n_folios: np.ndarray
    batch_limit_pages: np.ndarray
    engine_code: np.ndarray  # int64, index into ENGINES
    copy_threads: np.ndarray
    target_cpus: np.ndarray
    mapcount: np.ndarray
    busy_prob: np.ndarray
    access_rate_hz: np.ndarray
    sync_mode: np.ndarray  # int64, 1 = sync

    def __len__(self) -> int:
        return len(self.folio_kb)


def _numeric(points: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """Column as float64 plus a mask of cells that are not (finite) numbers."""
    raw = points[col]
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        num = raw.to_numpy(dtype=np.float64, copy=True)
    else:
        num = np.array(pd.to_numeric(raw, errors="coerce"), dtype=np.float64)
    bad = ~np.isfinite(num)
    return num, bad


def _codes(values: pd.Series, choices: tuple[str, ...]) -> np.ndarray:
    """Index of each value in ``choices`` (trimmed, case-insensitive); -1 when unknown or empty."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    lookup = np.array(
        [
            choices.index(u.strip().lower()) if str(u).strip().lower() in choices else -1
            for u in map(str, uniques)
        ]
        + [-1],
        dtype=np.int64,
    )
    return lookup[codes]  # the sentinel -1 picks the trailing -1


def check_points(points: pd.DataFrame) -> tuple[PointArrays, np.ndarray]:
    """Validate complete points; return typed arrays and one reason string per row ("" = valid).

    Invalid rows get harmless placeholder values in the arrays so the kernels can run on the whole
    set; callers drop or report them.
    """
    n = len(points)
    reasons = np.full(n, "", dtype=object)
    ok = np.ones(n, dtype=bool)

    def flag(mask: np.ndarray, message: str | np.ndarray) -> None:
        new = mask & ok
        if new.any():
            reasons[new] = message if isinstance(message, str) else message[new]
            ok[new] = False

    names = profile_names()
    prof_idx = _codes(points["profile"], names)
    flag(prof_idx < 0, "column profile: unknown profile")
    prof_idx[prof_idx < 0] = 0

    cols: dict[str, np.ndarray] = {}
    for col in NUMERIC_PARAMETERS:
        num, bad = _numeric(points, col)
        flag(bad, f"column {col}: not a number")
        num[bad] = 1.0
        cols[col] = num
    for col in INTEGER_PARAMETERS:
        v = cols[col]
        flag(v != np.round(v), f"column {col}: not an integer")

    eng_code = _codes(points["copy_engine"], ENGINES)
    flag(eng_code < 0, f"column copy_engine: unknown engine (known: {', '.join(ENGINES)})")
    eng_code[eng_code < 0] = 0

    mode_code = _codes(points["mode"], MODES)
    sync = (mode_code == MODES.index("sync")).astype(np.int64)
    flag(mode_code < 0, "column mode: must be async or sync")

    # Per-profile limits, gathered into per-point arrays.
    page_kb = np.array([get_profile(p).page_kb for p in names], dtype=np.float64)[prof_idx]
    max_folio_kb = np.array([get_profile(p).max_folio_kb for p in names], dtype=np.float64)[prof_idx]
    cpus = np.array([get_profile(p).cpus for p in names], dtype=np.float64)[prof_idx]
    engine_ok = np.array([[e in get_profile(p).copy_engines for e in ENGINES] for p in names], dtype=bool)[
        prof_idx, eng_code
    ]
    max_threads = np.array(
        [[get_profile(p).max_threads(e) for e in ENGINES] for p in names], dtype=np.float64
    )[prof_idx, eng_code]

    fkb = cols["folio_kb"]
    pow2 = (fkb > 0) & (np.log2(np.maximum(fkb, 1e-300)) == np.round(np.log2(np.maximum(fkb, 1e-300))))
    flag(
        ~pow2 | (fkb < page_kb) | (fkb > max_folio_kb),
        np.array(
            [
                f"column folio_kb: must be a power of two between {int(a)} and {int(b)} KiB"
                for a, b in zip(page_kb, max_folio_kb, strict=True)
            ],
            dtype=object,
        )
        if n and ((~pow2 | (fkb < page_kb) | (fkb > max_folio_kb)).any())
        else "",
    )
    flag(cols["n_folios"] < 1, "column n_folios: must be >= 1")
    flag(cols["batch_limit_pages"] < 1, "column batch_limit_pages: must be >= 1")
    flag(cols["copy_threads"] < 1, "column copy_threads: must be >= 1")
    flag(cols["target_cpus"] < 1, "column target_cpus: must be >= 1")
    flag(cols["target_cpus"] > cpus, "column target_cpus: above the profile's CPUs")
    flag(cols["mapcount"] < 1, "column mapcount: must be >= 1")
    bp = cols["busy_prob"]
    flag((bp < 0) | (bp > 1), "column busy_prob: must be in [0, 1]")
    flag(cols["access_rate_hz"] < 0, "column access_rate_hz: must be >= 0")
    flag(~engine_ok, "column copy_engine: engine not available on this profile")
    flag(
        (eng_code == 0) & (cols["copy_threads"] != 1),
        "column copy_threads: the cpu engine is single-threaded (use mt-cpu)",
    )
    flag(cols["copy_threads"] > max_threads, "column copy_threads: above the engine's limit on this profile")

    bad = ~ok
    # Placeholders for invalid rows so kernels never see nonsense.
    for col, safe in (
        ("folio_kb", page_kb),
        ("n_folios", 1.0),
        ("batch_limit_pages", 1.0),
        ("copy_threads", 1.0),
        ("target_cpus", 1.0),
        ("mapcount", 1.0),
        ("busy_prob", 0.0),
        ("access_rate_hz", 0.0),
    ):
        cols[col] = np.where(bad, safe, cols[col])
    eng_code = np.where(bad, 0, eng_code)

    arrays = PointArrays(
        profile_index=prof_idx,
        folio_kb=cols["folio_kb"],
        n_folios=cols["n_folios"],
        batch_limit_pages=cols["batch_limit_pages"],
        engine_code=eng_code,
        copy_threads=cols["copy_threads"],
        target_cpus=cols["target_cpus"],
        mapcount=cols["mapcount"],
        busy_prob=cols["busy_prob"],
        access_rate_hz=cols["access_rate_hz"],
        sync_mode=sync,
    )
    return arrays, reasons


def first_error(reasons: np.ndarray, row_offset: int = 1) -> str | None:
    """The first invalid row as ``row N, column C: why`` (rows counted from ``row_offset``)."""
    bad = np.flatnonzero(reasons != "")
    if len(bad) == 0:
        return None
    i = int(bad[0])
    more = f" ({len(bad) - 1} more invalid rows)" if len(bad) > 1 else ""
    return f"row {i + row_offset}, {reasons[i]}{more}"


def points_from_mapping(values: Mapping[str, object]) -> pd.DataFrame:
    """One point as a one-row DataFrame (for the single-point CLI)."""
    return pd.DataFrame([{k: v for k, v in values.items() if v is not None}])
