"""Run a sweep: spec → chunks → a :class:`~sweep.executors.ChunkExecutor` (Ray tasks or this
process) → Parquet folder, resumable.

:func:`run_sweep` is the one entry point (the CLI's ``foliotune sweep`` and ``foliotune run`` call
it). Before anything is printed or created it validates the spec, the options and the output folder;
it then measures a small sample of points in this process to size the chunks (≈0.5 s of work each,
so Ray's per-task overhead is negligible) and to estimate time and disk, and refuses runs above
``max_points`` rows unless ``yes`` is given.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from models.errors import UserError
from sweep.chunks import ChunkResult, code_version, compute_chunk, n_chunks
from sweep.executors import ChunkExecutor, ExecutorReport, make_executor
from sweep.spec import SweepSpec, load_spec, spec_summary
from sweep.storage import SweepStore

DEFAULT_SPEC = Path(__file__).with_name("specs") / "default.toml"
#: Rows (points × models) above which a sweep needs --max-points or --yes.
DEFAULT_MAX_POINTS = 50_000_000
TARGET_CHUNK_S = 0.5
MIN_CHUNK_POINTS = 256
MAX_CHUNK_POINTS = 200_000
SAMPLE_POINTS = 512


@dataclass(frozen=True)
class Estimate:
    seconds_per_point: float  # all models of the spec, one core
    bytes_per_point: float  # on disk, all models
    seconds_total: float  # on ``workers`` cores
    bytes_total: float
    workers: int

    def describe(self) -> str:
        t, b = _fmt_seconds(self.seconds_total), _fmt_bytes(self.bytes_total)
        return f"about {t} on {self.workers} CPU(s) and {b}"


@dataclass(frozen=True)
class SweepSummary:
    out_dir: str
    spec_hash: str
    code_version: str
    n_points: int
    n_rows: int
    models: tuple[str, ...]
    chunk_points: int
    chunks_total: int
    chunks_run: int
    chunks_reused: int
    chunks_damaged: int
    infeasible_points: int
    seconds: float
    points_per_s: float
    backend: str
    nodes: int  # Ray nodes that ran chunks in this run (1 for the serial backend, 0 if nothing ran)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        resumed = f", {self.chunks_reused} reused" if self.chunks_reused else ""
        damaged = f", {self.chunks_damaged} damaged file(s) recomputed" if self.chunks_damaged else ""
        return (
            f"{self.n_points:,} points × {len(self.models)} model(s) in {self.out_dir}: "
            f"{self.chunks_run} chunk(s) run{resumed}{damaged} in {self.seconds:.1f} s "
            f"({self.points_per_s:,.0f} points/s, {self.backend}); "
            f"infeasible points: {self.infeasible_points:,} of {self.n_points:,}"
        )


def _fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} days"


def _fmt_bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if b < 1000:
            return f"{b:.0f} {unit}"
        b /= 1000
    return f"{b:.0f} PB"


def as_spec(spec: SweepSpec | str | os.PathLike[str]) -> SweepSpec:
    return spec if isinstance(spec, SweepSpec) else load_spec(os.fspath(spec))


def estimate(spec: SweepSpec, workers: int) -> Estimate:
    """Time a small sample of the spec's first points in this process (after a warm-up)."""
    sample = min(spec.n_points, SAMPLE_POINTS)
    compute_chunk(spec, spec.hash, 0, min(sample, 16))  # warm-up: imports, JIT compilation, caches
    t0 = time.perf_counter()
    res = compute_chunk(spec, spec.hash, 0, sample)
    dt = max(time.perf_counter() - t0, 1e-9)
    spp = dt / sample
    bpp = res.data.nbytes / sample
    return Estimate(
        seconds_per_point=spp,
        bytes_per_point=bpp,
        seconds_total=spp * spec.n_points / max(workers, 1),
        bytes_total=bpp * spec.n_points,
        workers=workers,
    )


def auto_chunk_points(spec: SweepSpec, est: Estimate, workers: int) -> int:
    """Points per chunk: ≈TARGET_CHUNK_S of work, but at least 4 chunks per worker on small sweeps."""
    cp = int(TARGET_CHUNK_S / max(est.seconds_per_point, 1e-9))
    cp = max(MIN_CHUNK_POINTS, min(MAX_CHUNK_POINTS, cp))
    spread = math.ceil(spec.n_points / (4 * max(workers, 1)))
    cp = min(cp, max(spread, MIN_CHUNK_POINTS))
    return max(1, min(cp, spec.n_points))


class _Progress:
    """A rich progress bar (points done, rate, time left), or nothing."""

    def __init__(self, enabled: bool, total: int, done: int, description: str) -> None:
        self.bar: Any = None
        if not enabled:
            return
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("points"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.t0 = time.perf_counter()
        self.new_done = 0
        self.task = self.bar.add_task(description, total=total, completed=done, rate="")
        self.bar.start()

    def advance(self, points: int) -> None:
        if self.bar is None:
            return
        self.new_done += points
        rate = self.new_done / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, advance=points, rate=f"{rate:,.0f} pts/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run_sweep(
    spec_path_or_obj: SweepSpec | str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    address: str | None = None,
    workers: int | None = None,
    chunk_points: int | None = None,
    progress: bool = True,
    *,
    max_points: int | None = None,
    yes: bool = False,
    backend: str = "ray",
    executor: ChunkExecutor | None = None,
    echo: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Run (or resume) a sweep into ``out_dir`` and return its summary.

    Chunks run on ``executor`` (a :class:`~sweep.executors.ChunkExecutor`); without one, on
    :func:`~sweep.executors.make_executor`'s for ``backend``: ``"ray"`` (embedded Ray unless
    ``address`` or ``RAY_ADDRESS`` names a cluster) or ``"serial"`` (this process; same files,
    same values). Raises :class:`models.errors.UserError` for bad input, before anything is printed
    or created.
    """
    spec = as_spec(spec_path_or_obj)
    say = echo or (lambda _msg: None)
    out = out_dir if out_dir is not None else spec.out
    if out is None:
        raise UserError(f"{spec.source}: no output folder (give --out DIR or sweep.out in the spec)")
    if chunk_points is not None and chunk_points < 1:
        raise UserError(f"--chunk-points must be >= 1, not {chunk_points}")
    ex = executor if executor is not None else make_executor(backend, address=address, workers=workers)
    cv = code_version()
    SweepStore.inspect(spec, os.fspath(out), chunk_points or 1, cv)  # refuse a wrong folder first
    limit = DEFAULT_MAX_POINTS if max_points is None else max_points
    est_workers = ex.parallelism()
    est = estimate(spec, est_workers)
    if spec.n_rows > limit and not yes:
        raise UserError(
            f"{spec.source}: {spec.n_rows:,} rows (points × models) is above --max-points {limit:,}; "
            f"estimated {est.describe()}; raise --max-points or pass --yes"
        )
    say(spec_summary(spec))
    say(f"estimate: {est.describe()}")
    store = SweepStore.open(
        spec, os.fspath(out), chunk_points or auto_chunk_points(spec, est, est_workers), cv
    )
    t0 = time.perf_counter()
    try:
        return _run(spec, store, ex, chunk_points, progress, say, t0)
    finally:
        store.flush(force=True, quiet=True)
        store.close()


def _run(
    spec: SweepSpec,
    store: SweepStore,
    ex: ChunkExecutor,
    chunk_points: int | None,
    progress: bool,
    say: Callable[[str], None],
    t0: float,
) -> SweepSummary:
    """The body of :func:`run_sweep` once the folder is open: run the missing chunks, summarize."""
    cv, cp = store.manifest.code_version, store.chunk_points
    if store.rebuilt:
        say(f"{store.rebuilt}: manifest rebuilt from the spec and {len(store.chunks)} verified chunk file(s)")
    if chunk_points is not None and cp != chunk_points:
        say(f"resuming with the folder's chunk size {cp} (not {chunk_points})")
    if store.damaged:
        say(f"{store.damaged} damaged chunk file(s) found; recomputing them")
    missing = store.missing_chunks()
    reused = store.n_chunks - len(missing)
    if reused:
        say(f"resuming: {reused} of {store.n_chunks} chunk(s) already done")
    bar = _Progress(progress and bool(missing), spec.n_points, store.done_points(), "sweep")
    run_points = 0

    def on_result(res: ChunkResult) -> None:
        nonlocal run_points
        if res.code_version != cv:
            raise UserError(
                f"a worker runs foliotune code {res.code_version}, this driver {cv}; "
                "install the same foliotune on every node"
            )
        store.write_chunk(res)
        run_points += res.points
        bar.advance(res.points)

    try:
        report = ex.run(spec, missing, cp, on_result) if missing else ExecutorReport("nothing to run", 0)
    finally:
        bar.close()
    store.finish()
    seconds = time.perf_counter() - t0
    return SweepSummary(
        out_dir=str(store.out_dir),
        spec_hash=spec.hash,
        code_version=cv,
        n_points=spec.n_points,
        n_rows=spec.n_rows,
        models=spec.models,
        chunk_points=cp,
        chunks_total=store.n_chunks,
        chunks_run=len(missing),
        chunks_reused=reused,
        chunks_damaged=store.damaged,
        infeasible_points=store.infeasible_points(),
        seconds=seconds,
        points_per_s=run_points / seconds if seconds > 0 else 0.0,
        backend=report.description,
        nodes=report.nodes,
    )


def default_spec_path() -> Path:
    return DEFAULT_SPEC


def planned_chunks(spec: SweepSpec, chunk_points: int) -> int:
    return n_chunks(spec.n_points, chunk_points)
