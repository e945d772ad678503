"""Chunks: contiguous ranges of point indices, and the plain function that evaluates one.

:func:`compute_chunk` is what a Ray task runs (``sweep/ray_backend.py`` wraps it) and what the serial
backend and the tests call directly. It decodes its points from their indices, completes them from the
profiles' defaults, validates them once, runs every model of the spec and returns the rows already
encoded as one Parquet file (bytes), so the driver only writes bytes to disk.

Row layout (contract): ``point``, ``model``, the parameters (``models.params.PARAMETERS`` order), the
outputs (``models.params.OUTPUTS`` order), then extras (the Monte Carlo ``*_se``/p50 columns when the
sweep runs ``montecarlo``; NaN on analytic rows) and ``infeasible`` (empty for valid points, else the
reason; outputs are NaN). Rows are sorted by ``point`` then by the order of ``models`` in the spec.
"""

from __future__ import annotations

import ast
import hashlib
import json
import time
from dataclasses import dataclass, replace
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from models import profiles
from models.evaluate import MC_EXTRA, run_kernel
from models.limits import (
    MC_BYTES_PER_FOLIO,
    MC_BYTES_PER_WINDOW,
    MC_MAX_SCRATCH_BYTES,
    montecarlo_windows,
)
from models.params import (
    INTEGER_PARAMETERS,
    OUTPUTS,
    PARAMETERS,
    PointArrays,
    check_points,
    defaults_for,
    mix_counts,
)
from models.profiles import DEFAULT_PROFILE, get_profile, profile_names
from sweep.samplers import axis_columns
from sweep.spec import STRING_PARAMETERS, SweepSpec

#: Parquet key-value metadata key holding the chunk's identity (JSON).
META_KEY = b"foliotune"
COMPRESSION = "snappy"


@dataclass(frozen=True)
class ChunkResult:
    """One evaluated chunk: its identity, counts and the Parquet file's bytes."""

    chunk: int
    start: int
    stop: int
    rows: int
    infeasible_points: int
    sha256: str
    data: np.ndarray  # uint8 view of the Parquet file
    seconds: float
    code_version: str

    @property
    def points(self) -> int:
        return self.stop - self.start


def chunk_bounds(chunk: int, chunk_points: int, n_points: int) -> tuple[int, int]:
    start = chunk * chunk_points
    return start, min(start + chunk_points, n_points)


def n_chunks(n_points: int, chunk_points: int) -> int:
    return -(-n_points // chunk_points)


#: Model modules whose code produces sweep numbers; what they import from ``models`` is added.
_MODEL_ROOTS = ("evaluate", "params", "profiles", "analytic", "montecarlo")


def _model_files(models_dir: Path) -> list[Path]:
    """The model modules behind the numbers (roots plus their ``models.*`` imports, transitively)."""
    todo = list(_MODEL_ROOTS)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        path = models_dir / f"{name}.py"
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        try:
            tree = ast.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1:
                    mod = f"models.{mod}" if mod else "models"
                if mod == "models":
                    todo += [a.name for a in node.names]
                elif mod.startswith("models."):
                    todo.append(mod.split(".")[1])
            elif isinstance(node, ast.Import):
                todo += [a.name.split(".")[1] for a in node.names if a.name.startswith("models.")]
    return [models_dir / f"{n}.py" for n in sorted(seen)]


@cache
def code_version() -> str:
    """foliotune's version plus a hash of the code and profile data that produce a sweep's numbers.

    Covers the model modules behind ``models.evaluate`` (found from their imports), the profile files
    and this package's decoding code, so editing unrelated modules does not invalidate a folder.
    """

    try:
        version = metadata.version("foliotune")
    except metadata.PackageNotFoundError:
        version = "0+src"
    h = hashlib.sha256()
    models_dir = Path(profiles.__file__).resolve().parent
    here = Path(__file__).resolve().parent
    files = _model_files(models_dir) + [here / "samplers.py", here / "chunks.py"]
    files += sorted(f for d in profiles.search_dirs() if d.is_dir() for f in d.glob("*.toml"))
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return f"{version}+{h.hexdigest()[:12]}"


def extra_columns(models: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(MC_EXTRA) if "montecarlo" in models else ()


def chunk_points_frame(spec: SweepSpec, start: int, stop: int) -> pd.DataFrame:
    """The points ``[start, stop)`` as a complete parameter table, contract column order.

    Fixed values are broadcast and axes decoded; parameters the spec leaves out take each point's
    profile defaults (what :func:`models.params.complete_points` does, done here per profile code
    because that is much faster on large chunks; a test checks both agree).
    """
    if spec.parts:  # a union of grids: each part's share of the range, in order
        frames = []
        for offset, grid in spec.grids():
            lo, hi = max(start, offset), min(stop, offset + grid.n_points)
            if lo < hi:
                frames.append(chunk_points_frame(grid, lo - offset, hi - offset))
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    n = stop - start
    given: dict[str, object] = {name: value for name, value in spec.fixed}
    given.update(axis_columns(spec, start, stop))
    prof = given.get("profile", DEFAULT_PROFILE)
    cols: dict[str, object] = {}
    if isinstance(prof, np.ndarray):
        codes, names = pd.factorize(prof, sort=False)
        table = [defaults_for(get_profile(str(p))) for p in names]
    for name in PARAMETERS:
        if name in given:
            v = given[name]
        elif isinstance(prof, np.ndarray):
            v = np.asarray([d[name] for d in table], dtype=object if name in STRING_PARAMETERS else None)[
                codes
            ]
        else:
            v = defaults_for(get_profile(str(prof)))[name]
        if not isinstance(v, np.ndarray):
            v = np.full(n, v, dtype=object if isinstance(v, str) else None)
        cols[name] = v
    if "folio_kb" not in given and "folio_mix" in given:
        # folio_kb stays empty where a folio_mix is given (models/MECHANISM.md §1)
        mix = pd.Series(cols["folio_mix"], dtype=object)
        has_mix = (~mix.isna() & (mix.astype(str).str.strip() != "")).to_numpy()
        cols["folio_kb"] = np.where(has_mix, np.nan, np.asarray(cols["folio_kb"], dtype=np.float64))
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


def evaluate_points(spec: SweepSpec, start: int, stop: int) -> tuple[pa.Table, int]:
    """Evaluate points ``[start, stop)`` with every model of the spec; return the rows and the number
    of infeasible points."""
    n = stop - start
    k = len(spec.models)
    full = chunk_points_frame(spec, start, stop)
    arrays, reasons = check_points(full)
    bad = reasons != ""
    # Per (point, model) reasons: a point can be too large for the Monte Carlo model only.
    row_reasons = np.repeat(reasons.astype(object), k)
    mc_arrays, mc_too_large = montecarlo_feasible(arrays, bad)

    rows = n * k
    columns: dict[str, pa.Array] = {}
    columns["point"] = pa.array(np.repeat(np.arange(start, stop, dtype=np.int64), k))
    columns["model"] = pa.array(list(spec.models), type=pa.string()).take(pa.array(np.tile(np.arange(k), n)))
    for name in PARAMETERS:
        col = full[name]
        if name in STRING_PARAMETERS:
            codes, uniques = pd.factorize(col.astype(str), sort=False)
            labels = pa.array(np.asarray(uniques, dtype=object), type=pa.string())
            columns[name] = labels.take(pa.array(np.repeat(codes, k)))
        elif name in INTEGER_PARAMETERS:
            num = pd.to_numeric(col).to_numpy(dtype=np.float64)
            empty = ~np.isfinite(num)  # folio_kb is empty where folio_mix is given
            ints = np.round(np.where(empty, 0.0, num)).astype(np.int64)
            columns[name] = pa.array(np.repeat(ints, k), mask=np.repeat(empty, k) if empty.any() else None)
        else:
            columns[name] = pa.array(np.repeat(pd.to_numeric(col).to_numpy(dtype=np.float64), k))

    extras = extra_columns(spec.models)
    out_names = list(OUTPUTS) + list(extras)
    outs = {name: np.full(rows, np.nan) for name in out_names}
    for m, model in enumerate(spec.models):
        model_bad = bad
        if model == "montecarlo" and mc_too_large is not None:
            over, why = mc_too_large
            model_bad = bad | over
            row_reasons[m::k] = np.where(over, why, row_reasons[m::k])
        result = run_kernel(
            mc_arrays if model == "montecarlo" else arrays, model, seed=spec.seed, replicas=spec.replicas
        )
        for name, values in result.items():
            if name not in outs:
                continue  # a kernel-private column outside the contract and the known extras
            v = np.asarray(values, dtype=np.float64)
            outs[name][m::k] = np.where(model_bad, np.nan, v) if model_bad.any() else v
    for name in out_names:
        columns[name] = pa.array(outs[name])
    r_codes, r_uniques = pd.factorize(row_reasons.astype(str), sort=False)
    reason_labels = pa.array(np.asarray(r_uniques, dtype=object), type=pa.string())
    columns["infeasible"] = reason_labels.take(pa.array(r_codes))
    infeasible_points = (row_reasons.astype(str) != "").reshape(n, k).any(axis=1)
    return pa.table(columns), int(infeasible_points.sum())


def montecarlo_feasible(
    arrays: PointArrays, bad: np.ndarray
) -> tuple[PointArrays, tuple[np.ndarray, str] | None]:
    """The points the Monte Carlo model can take, and which valid points are too large for it.

    A point whose own Monte Carlo scratch is above :data:`models.limits.MC_MAX_SCRATCH_BYTES`
    (``n_folios`` near 2^31, or many large folios that may split) is infeasible for the Monte Carlo
    model only, with a reason saying what fits; its analytic result stays. The returned arrays hold
    a one-folio placeholder there, so the kernel's scratch (sized by the largest point) fits.
    Returns ``(arrays, None)`` when every point fits.
    """
    page_kb = np.array([get_profile(p).page_kb for p in profile_names()], dtype=np.float64)[
        arrays.profile_index
    ]
    n = np.asarray(arrays.n_folios, dtype=np.float64)
    windows = montecarlo_windows(n, arrays.mix_kb, arrays.mix_folios, arrays.mix_len, page_kb)
    own = MC_BYTES_PER_FOLIO * n + MC_BYTES_PER_WINDOW * windows
    over = (own > MC_MAX_SCRATCH_BYTES) & ~bad
    if not over.any():
        return arrays, None
    limit_mib = MC_MAX_SCRATCH_BYTES // 2**20
    why = (
        f"montecarlo: the call needs more than {limit_mib:,} MiB of Monte Carlo scratch "
        f"(at most {MC_MAX_SCRATCH_BYTES // (MC_BYTES_PER_FOLIO + 2 * MC_BYTES_PER_WINDOW):,} folios of base pages, "
        "fewer of large folios); the analytic model has no such limit"
    )
    n_safe = np.where(over, 1.0, n)
    safe = replace(
        arrays,
        n_folios=n_safe,
        mix_folios=np.ascontiguousarray(mix_counts(np.asarray(arrays.mix_frac), n_safe)),
    )
    return safe, (over, why)


def encode_table(table: pa.Table, meta: dict[str, object]) -> np.ndarray:
    """Encode a table as one Parquet file in memory; ``meta`` goes into its key-value metadata."""
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[META_KEY] = json.dumps(meta, sort_keys=True).encode()
    table = table.replace_schema_metadata(schema_meta)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=COMPRESSION, write_page_checksum=True)
    return np.frombuffer(sink.getvalue(), dtype=np.uint8)


def compute_chunk(spec: SweepSpec, spec_hash: str, chunk: int, chunk_points: int) -> ChunkResult:
    """Evaluate one chunk and encode it (a plain function: Ray tasks, the serial backend and tests)."""
    t0 = time.perf_counter()
    start, stop = chunk_bounds(chunk, chunk_points, spec.n_points)
    table, infeasible = evaluate_points(spec, start, stop)
    meta = {
        "spec_hash": spec_hash,
        "chunk": chunk,
        "start": start,
        "stop": stop,
        "rows": table.num_rows,
        "infeasible_points": infeasible,
        "code_version": code_version(),
    }
    data = encode_table(table, meta)
    return ChunkResult(
        chunk=chunk,
        start=start,
        stop=stop,
        rows=table.num_rows,
        infeasible_points=infeasible,
        sha256=hashlib.sha256(data.data).hexdigest(),
        data=data,
        seconds=time.perf_counter() - t0,
        code_version=code_version(),
    )


def read_chunk_meta(path: str | Path) -> dict[str, object] | None:
    """The foliotune metadata of a chunk file, or None if the file is not a readable Parquet file."""
    try:
        md = pq.read_metadata(path)
        kv = md.metadata or {}
        meta = json.loads(kv[META_KEY])
        if not isinstance(meta, dict) or meta.get("rows") != md.num_rows:
            return None
        return meta
    except Exception:  # truncated, empty, not Parquet, no metadata: all mean "recompute"
        return None


def verify_chunk_file(path: str | Path, expected: dict[str, object]) -> bool:
    """True if the file's footer metadata holds every ``expected`` key with its value and the whole
    file reads with its Parquet page checksums verified (a truncated or bit-flipped file fails)."""
    meta = read_chunk_meta(path)
    if meta is None or any(meta.get(k) != v for k, v in expected.items()):
        return False
    try:
        pq.ParquetFile(path, page_checksum_verification=True).read()
    except Exception:  # any read failure means the file is not what its footer says
        return False
    return True
