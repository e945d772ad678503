"""Model parameters and outputs: one table of names, units, kinds, roles, defaults and ranges.

:data:`TABLE` is the parameter vocabulary of foliotune; every other list of parameter names
(:data:`PARAMETERS`, :data:`NUMERIC_PARAMETERS`, :data:`INTEGER_PARAMETERS`,
:data:`STRING_PARAMETERS`, :data:`WORKLOAD`, :data:`CHOICE`, ...) derives from it. Parameters
carry their unit in their name; inside the code every quantity is SI (seconds, bytes, hertz); KiB
appears only in ``folio_kb``/``folio_mix`` because that is how kernel engineers name folio sizes.
The mechanism the parameters drive is described in ``models/MECHANISM.md``.

Validation is vectorized: :func:`check_points` returns, for each row, ``""`` when the row is valid
or a one-line reason naming the column. Front ends turn the first reason into an error (``predict``)
or count the rows as infeasible (``sweep``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from models.errors import UserError
from models.profiles import (
    DEFAULT_PROFILE,
    KNOWN_KERNELS,
    HardwareProfile,
    get_profile,
    kernel_code,
    profile_names,
)

ENGINES: tuple[str, ...] = ("cpu", "mt-cpu", "dma", "dsa")
MODES: tuple[str, ...] = ("async", "sync")
#: At most this many sizes in one ``folio_mix``.
MAX_MIX = 8
#: Largest ``n_folios`` and ``batch_limit_pages``: the kernel counts both in ``int``
#: (mm/migrate.c ``struct migrate_pages_stats``, ``int nr_pages`` in ``migrate_pages()``).
INT_MAX = 2**31 - 1

Kind = Literal["int", "float", "str"]
Role = Literal["machine", "workload", "choice"]


@dataclass(frozen=True)
class Parameter:
    """One parameter of a point: its name (unit in the name), kind, role and documented range.

    ``role``: ``machine`` (the hardware profile), ``workload`` (what the call migrates and the
    environment it runs in, the kernel included) or ``choice`` (what foliotune recommends).
    ``lo``/``hi`` bound numbers (inclusive); ``choices`` list the allowed texts where they are a
    closed set. ``default`` says where a missing value comes from. ``optional``: a column that
    results, measurements and workloads made before it existed may lack (its default applies).
    """

    name: str
    unit: str
    kind: Kind
    role: Role
    default: str
    range: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False


#: The parameter table (contract order: the columns of points files and sweep results).
TABLE: tuple[Parameter, ...] = (
    Parameter("profile", "name", "str", "machine", "DEFAULT_PROFILE", "a known profile"),
    Parameter("folio_kb", "KiB", "int", "workload", "profile page_kb (empty with folio_mix)",
              "power of two, page_kb … max_folio_kb", 1, 2**30),
    Parameter("n_folios", "folios", "int", "workload", "profile default_n_folios", "1 … 2^31-1", 1, INT_MAX),
    Parameter("batch_limit_pages", "base pages", "int", "choice", "profile default_batch_limit_pages",
              "1 … 2^31-1", 1, INT_MAX),
    Parameter("copy_engine", "engine", "str", "choice", "cpu", "cpu, mt-cpu, dma, dsa (on the profile)",
              choices=ENGINES),
    Parameter("copy_threads", "threads/channels", "int", "choice", "1", "1 … the engine's limit", 1, 4096),
    Parameter("target_cpus", "CPUs", "int", "workload", "profile default_target_cpus", "1 … profile CPUs",
              1, 1 << 20),
    Parameter("mapcount", "page tables", "int", "workload", "1", "1 … 65536", 1, 65536),
    Parameter("busy_prob", "probability", "float", "workload", "0", "0 … 1", 0.0, 1.0),
    Parameter("access_rate_hz", "1/s per folio", "float", "workload", "profile default_access_rate_hz",
              "0 … 1e12", 0.0, 1e12),
    Parameter("mode", "mode", "str", "workload", "sync", "async, sync", choices=MODES),
    Parameter("kernel", "MAJOR.MINOR", "str", "workload", "profile default_kernel",
              f"a known release ({KNOWN_KERNELS[0]} … {KNOWN_KERNELS[-1]})", choices=KNOWN_KERNELS,
              optional=True),
    Parameter("folio_mix", "KB:FRACTION,...", "str", "workload", "empty (one size: folio_kb)",
              f"sizes as folio_kb, fractions >= 0 summing to 1, at most {MAX_MIX} sizes, not with folio_kb",
              optional=True),
    Parameter("numa_hinting", "0/1", "int", "workload", "0", "0 or 1", 0, 1, optional=True),
    Parameter("writeback_prob", "probability", "float", "workload", "0", "0 … 1", 0.0, 1.0, optional=True),
    Parameter("writeback_wait_s", "s", "float", "workload", "0.001 (assumed: one SSD write completion)",
              "0 … 10", 0.0, 10.0, optional=True),
    Parameter("alloc_fail_prob", "probability", "float", "workload", "0", "0 … 1", 0.0, 1.0, optional=True),
)  # fmt: skip
BY_NAME: dict[str, Parameter] = {p.name: p for p in TABLE}

#: Parameter columns of a point, in contract order.
PARAMETERS: tuple[str, ...] = tuple(p.name for p in TABLE)
NUMERIC_PARAMETERS: tuple[str, ...] = tuple(p.name for p in TABLE if p.kind != "str")
INTEGER_PARAMETERS: tuple[str, ...] = tuple(p.name for p in TABLE if p.kind == "int")
FLOAT_PARAMETERS: tuple[str, ...] = tuple(p.name for p in TABLE if p.kind == "float")
STRING_PARAMETERS: tuple[str, ...] = tuple(p.name for p in TABLE if p.kind == "str")
#: What foliotune recommends.
CHOICE: tuple[str, ...] = tuple(p.name for p in TABLE if p.role == "choice")
#: Everything of a point that is neither the profile nor a choice.
WORKLOAD: tuple[str, ...] = tuple(p.name for p in TABLE if p.role == "workload")
#: The workload parameters every results table has, and the optional ones (see Parameter.optional).
CORE_WORKLOAD: tuple[str, ...] = tuple(p.name for p in TABLE if p.role == "workload" and not p.optional)
OPTIONAL_WORKLOAD: tuple[str, ...] = tuple(p.name for p in TABLE if p.role == "workload" and p.optional)
INTEGER_WORKLOAD: tuple[str, ...] = tuple(p for p in WORKLOAD if p in INTEGER_PARAMETERS)
FLOAT_WORKLOAD: tuple[str, ...] = tuple(p for p in WORKLOAD if p in FLOAT_PARAMETERS)
#: The kernel lists used by the engines (copy-engine names, modes).
ENGINE_LISTS: dict[str, tuple[str, ...]] = {"copy_engine": ENGINES, "mode": MODES}

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
#: Row of each output in a kernel's output array (kernels write by name through these).
OUTPUT_INDEX: dict[str, int] = {name: i for i, name in enumerate(OUTPUTS)}
#: Derived ratio columns against the unbatched path (batch_limit_pages = 1), same other parameters.
DERIVED: tuple[str, ...] = ("ipi_reduction", "speedup")

UNITS: dict[str, str] = {p.name: p.unit for p in TABLE if p.kind != "str" or p.name == "folio_mix"} | {
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
    """Defaults of a profile for every parameter (used for columns a points file leaves out).

    ``folio_kb``'s default applies only where ``folio_mix`` is empty (see :func:`complete_points`).
    """
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
        "kernel": profile.default_kernel,
        "folio_mix": "",
        "numa_hinting": 0,
        "writeback_prob": 0.0,
        "writeback_wait_s": 0.001,
        "alloc_fail_prob": 0.0,
    }


def _has_mix(values: pd.Series) -> np.ndarray:
    """Rows whose ``folio_mix`` is given (not empty, not NaN)."""
    v = values.astype(object)
    return (~v.isna() & (v.astype(str).str.strip() != "")).to_numpy()


def complete_points(
    points: pd.DataFrame, default_profile: str | None = None, row_offset: int = 1
) -> pd.DataFrame:
    """Return ``points`` with every parameter column present, missing ones taken from the profile.

    Cells that are empty (NaN) in a present column are filled the same way, except ``folio_kb``
    where ``folio_mix`` is given (it stays empty). Column order is the input's, followed by the
    added parameters in contract order.

    Parameters
    ----------
    points : pandas.DataFrame
        Points, any subset of :data:`PARAMETERS` (units as in the names).
    default_profile : str, optional
        Profile of rows without one (default ``models.profiles.DEFAULT_PROFILE``).
    row_offset : int
        Number of the first row in error messages.

    Returns
    -------
    pandas.DataFrame
        The completed points.

    Raises
    ------
    PointError
        A row names an unknown profile.
    """
    out = points.copy()
    if default_profile is None:
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
    keep_empty = _has_mix(out["folio_mix"])
    names = out["profile"].unique()
    for col in PARAMETERS[1:]:
        missing = out[col].isna().to_numpy()
        if col == "folio_kb":
            missing = missing & ~keep_empty
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
    """Typed, validated parameter arrays of a set of points (one entry per point).

    The folio sizes of a point are ``mix_kb[i, :mix_len[i]]`` (KiB) with ``mix_folios[i, k]``
    folios each, in list order (models/MECHANISM.md §1); a single ``folio_kb`` is a mix of one.
    ``folio_kb`` holds the first size (kept for callers that read one size).
    """

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
    kernel_code: np.ndarray  # float64, 100·MAJOR + MINOR
    numa_hinting: np.ndarray  # float64, 0 or 1
    writeback_prob: np.ndarray
    writeback_wait_s: np.ndarray
    alloc_fail_prob: np.ndarray
    mix_len: np.ndarray  # int64, sizes in the mix (1 for a single folio_kb)
    mix_kb: np.ndarray  # float64 (n, MAX_MIX), 0 beyond mix_len
    mix_folios: np.ndarray  # float64 (n, MAX_MIX), folios of each size, summing to n_folios
    mix_frac: np.ndarray  # float64 (n, MAX_MIX), the share of folios of each size (the mix as given)

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


def parse_folio_mix(text: str) -> tuple[tuple[int, float], ...]:
    """``"4:0.7,64:0.3"`` as ((4, 0.7), (64, 0.3)); raises ValueError with a reason.

    Checks the form, sizes (powers of two, each once), fractions (finite, >= 0, summing to 1
    within 1e-9) and the count (at most :data:`MAX_MIX`). Profile limits are checked by
    :func:`check_points`.
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError("must be KB:FRACTION,... (e.g. 4:0.7,64:0.3)")
    out: list[tuple[int, float]] = []
    for part in parts:
        kb_text, sep, frac_text = part.partition(":")
        if not sep:
            raise ValueError(f"{part!r} is not KB:FRACTION")
        try:
            kb_f = float(kb_text)
            frac = float(frac_text)
        except ValueError:
            raise ValueError(f"{part!r} is not KB:FRACTION") from None
        if not (np.isfinite(kb_f) and kb_f >= 1 and kb_f == int(kb_f) and (int(kb_f) & (int(kb_f) - 1)) == 0):
            raise ValueError(f"size {kb_text.strip()!r} is not a power of two (KiB)")
        if not np.isfinite(frac) or frac < 0:
            raise ValueError(f"fraction {frac_text.strip()!r} is negative or not a number")
        out.append((int(kb_f), frac))
    sizes = [k for k, _ in out]
    if len(set(sizes)) != len(sizes):
        raise ValueError("a size is listed twice")
    if len(out) > MAX_MIX:
        raise ValueError(f"more than {MAX_MIX} sizes")
    total = sum(f for _, f in out)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"fractions sum to {total:g}, not 1")
    return tuple(out)


def mix_counts(fractions: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Folios of each size: ``n × fraction`` rounded by largest remainder, ties to the earlier
    size, so each row sums to ``n`` (models/MECHANISM.md §1). ``fractions``: (rows, K)."""
    exact = fractions * n[:, None]
    base = np.floor(exact)
    rem = exact - base
    deficit = np.rint(n - base.sum(axis=1)).astype(np.int64)
    order = np.argsort(-rem, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(fractions.shape[1])[None, :].repeat(len(n), axis=0), axis=1)
    return base + (rank < deficit[:, None])


def check_points(points: pd.DataFrame) -> tuple[PointArrays, np.ndarray]:
    """Validate complete points; return typed arrays and one reason per row.

    Every parameter is checked against its documented range in :data:`TABLE` (so a
    ``batch_limit_pages`` of 1e19 or an ``n_folios`` of 1e308 is refused, not wrapped or
    overflowed), ``kernel`` against the known releases and ``folio_mix`` against its form and the
    profile's folio sizes. Invalid rows get harmless placeholder values in the arrays so the
    kernels can run on the whole set; callers drop or report them.

    Parameters
    ----------
    points : pandas.DataFrame
        One row per point with every column of :data:`PARAMETERS` (see :func:`complete_points`);
        units as in the names (KiB, base pages, CPUs, probabilities, Hz, s).

    Returns
    -------
    arrays : PointArrays
        Typed arrays in SI units, folio sizes as mixes (``mix_len``, ``mix_kb``, ``mix_folios``).
    reasons : numpy.ndarray of str
        ``""`` for a valid row, else ``"column C: why"``.

    References
    ----------
    mm/migrate.c ``struct migrate_pages_stats`` and ``migrate_pages()`` count folios and pages in
    ``int``: hence the 2^31 - 1 bounds of ``n_folios`` and ``batch_limit_pages``.
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

    has_mix = _has_mix(points["folio_mix"]) if "folio_mix" in points.columns else np.zeros(n, dtype=bool)
    cols: dict[str, np.ndarray] = {}
    for col in NUMERIC_PARAMETERS:
        num, bad = _numeric(points, col)
        if col == "folio_kb":
            flag(has_mix & ~bad, "column folio_mix: given together with folio_kb (leave folio_kb empty)")
            bad = bad & ~has_mix
            num[has_mix] = np.nan
        flag(bad, f"column {col}: not a number")
        spec = BY_NAME[col]
        assert spec.lo is not None and spec.hi is not None
        rng = (num < spec.lo) | (num > spec.hi)
        flag(rng & ~bad & np.isfinite(num), f"column {col}: outside {spec.range}")
        if col in INTEGER_PARAMETERS:
            flag(np.isfinite(num) & (num != np.round(num)), f"column {col}: not an integer")
        num[bad | ~np.isfinite(num)] = 1.0
        cols[col] = num

    eng_code = _codes(points["copy_engine"], ENGINES)
    flag(eng_code < 0, f"column copy_engine: unknown engine (known: {', '.join(ENGINES)})")
    eng_code[eng_code < 0] = 0

    mode_code = _codes(points["mode"], MODES)
    sync = (mode_code == MODES.index("sync")).astype(np.int64)
    flag(mode_code < 0, "column mode: must be async or sync")

    kcodes, kuniq = pd.factorize(points["kernel"].astype(object), use_na_sentinel=True)
    klookup = np.array([kernel_code(str(u)) for u in kuniq] + [-1], dtype=np.float64)
    kern = klookup[kcodes]
    flag(
        kern < 0,
        f"column kernel: must be a known release MAJOR.MINOR ({KNOWN_KERNELS[0]} … {KNOWN_KERNELS[-1]})",
    )
    kern[kern < 0] = 606.0

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

    # folio_mix: parse each distinct text once.
    mix_kb = np.zeros((n, MAX_MIX))
    mix_frac = np.zeros((n, MAX_MIX))
    mix_len = np.ones(n, dtype=np.int64)
    if has_mix.any():
        mcodes, muniq = pd.factorize(points["folio_mix"].astype(object).where(has_mix, ""), sort=False)
        for u, text in enumerate(muniq):
            rows = (mcodes == u) & has_mix
            if not rows.any():
                continue
            try:
                parsed = parse_folio_mix(str(text))
            except ValueError as exc:
                flag(rows, f"column folio_mix: {exc}")
                continue
            mix_len[rows] = len(parsed)
            for k, (kb, frac) in enumerate(parsed):
                mix_kb[rows, k] = kb
                mix_frac[rows, k] = frac
    single = ~has_mix
    mix_kb[single, 0] = cols["folio_kb"][single]
    mix_frac[single, 0] = 1.0
    # every used size: a power of two within the profile's folio sizes (checked on used entries only)
    row, col_k = np.nonzero(np.arange(MAX_MIX)[None, :] < mix_len[:, None])
    size_kb = mix_kb[row, col_k]
    lg = np.log2(np.maximum(size_kb, 1e-300))
    bad_size = np.zeros(n, dtype=bool)
    bad_size[row[(size_kb < page_kb[row]) | (size_kb > max_folio_kb[row]) | (lg != np.round(lg))]] = True
    if bad_size.any():
        col_name = np.where(has_mix, "folio_mix", "folio_kb")
        msg = np.array(
            [
                (
                    f"column folio_mix: sizes must be powers of two between {int(a)} and {int(b)} KiB"
                    if c == "folio_mix"
                    else f"column folio_kb: must be a power of two between {int(a)} and {int(b)} KiB"
                )
                for c, a, b in zip(col_name, page_kb, max_folio_kb, strict=True)
            ],
            dtype=object,
        )
        flag(bad_size, msg)

    flag(cols["target_cpus"] > cpus, "column target_cpus: above the profile's CPUs")
    flag(~engine_ok, "column copy_engine: engine not available on this profile")
    flag(
        (eng_code == 0) & (cols["copy_threads"] != 1),
        "column copy_threads: the cpu engine is single-threaded (use mt-cpu)",
    )
    flag(cols["copy_threads"] > max_threads, "column copy_threads: above the engine's limit on this profile")

    bad = ~ok
    # Placeholders for invalid rows so kernels never see nonsense.
    for col, safe in (
        ("n_folios", 1.0),
        ("batch_limit_pages", 1.0),
        ("copy_threads", 1.0),
        ("target_cpus", 1.0),
        ("mapcount", 1.0),
        ("busy_prob", 0.0),
        ("access_rate_hz", 0.0),
        ("numa_hinting", 0.0),
        ("writeback_prob", 0.0),
        ("writeback_wait_s", 0.0),
        ("alloc_fail_prob", 0.0),
    ):
        cols[col] = np.where(bad, safe, cols[col])
    eng_code = np.where(bad, 0, eng_code)
    kern = np.where(bad, 606.0, kern)
    mix_len = np.where(bad, 1, mix_len)
    mix_kb = np.where(bad[:, None], 0.0, mix_kb)
    mix_kb[bad, 0] = page_kb[bad]
    mix_frac = np.where(bad[:, None], 0.0, mix_frac)
    mix_frac[bad, 0] = 1.0
    # one size: all the folios (what mix_counts gives, without its per-row sort)
    mix_folios = np.zeros_like(mix_frac)
    mix_folios[:, 0] = cols["n_folios"]
    multi = mix_len > 1
    if multi.any():
        mix_folios[multi] = mix_counts(mix_frac[multi], cols["n_folios"][multi])

    arrays = PointArrays(
        profile_index=prof_idx,
        folio_kb=mix_kb[:, 0].copy(),
        n_folios=cols["n_folios"],
        batch_limit_pages=cols["batch_limit_pages"],
        engine_code=eng_code,
        copy_threads=cols["copy_threads"],
        target_cpus=cols["target_cpus"],
        mapcount=cols["mapcount"],
        busy_prob=cols["busy_prob"],
        access_rate_hz=cols["access_rate_hz"],
        sync_mode=sync,
        kernel_code=kern,
        numa_hinting=cols["numa_hinting"],
        writeback_prob=cols["writeback_prob"],
        writeback_wait_s=cols["writeback_wait_s"],
        alloc_fail_prob=cols["alloc_fail_prob"],
        mix_len=mix_len,
        mix_kb=np.ascontiguousarray(mix_kb),
        mix_folios=np.ascontiguousarray(mix_folios),
        mix_frac=np.ascontiguousarray(mix_frac),
    )
    return arrays, reasons


def check_value(name: str, value: object) -> str | None:
    """Why one value of parameter ``name`` is wrong whatever the rest of the point (None if fine).

    Profile-dependent limits (folio size, CPUs, engines) are left to :func:`check_points`.
    """
    spec = BY_NAME[name]
    if spec.kind == "str":
        if not isinstance(value, str):
            return f"must be a string, not {value!r}"
        if name == "kernel" and kernel_code(value) < 0:
            return f"must be a known release MAJOR.MINOR ({KNOWN_KERNELS[0]} … {KNOWN_KERNELS[-1]}), not {value!r}"
        if name == "folio_mix" and value.strip():
            try:
                parse_folio_mix(value)
            except ValueError as exc:
                return str(exc)
        if spec.choices and name != "kernel" and value not in spec.choices:
            return f"unknown {name} {value!r} (known: {', '.join(spec.choices)})"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(float(value)):
        return f"must be a finite number, not {value!r}"
    v = float(value)
    if spec.kind == "int" and v != round(v):
        return f"must be an integer, not {value!r}"
    assert spec.lo is not None and spec.hi is not None
    if not (spec.lo <= v <= spec.hi):
        return f"must be in {spec.range}, not {value!r}"
    if name == "folio_kb" and (int(v) & (int(v) - 1)):
        return f"must be a power of two (KiB), not {value!r}"
    return None


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
