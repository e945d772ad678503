"""Background sweeps started from the explorer (a region of the landscape, refined).

One worker thread runs the sweeps one after another through :func:`sweep.runner.run_sweep` (Ray:
the process's Ray if one is running, else embedded Ray; or the serial backend). Progress is read
from the sweep folder's manifest, so the page only polls a small dictionary. Output folders are
chosen here, under the explorer's sweeps folder, named by the spec hash; the browser never sends a
path.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.results_view import KEY_WORKLOAD, Results, coerce_value
from models.errors import UserError
from models.evaluate import MODELS
from sweep.results import sweep_status
from sweep.runner import run_sweep
from sweep.spec import spec_from_dict

MAX_REGION_POINTS = 200_000
REFINE_VALUES = 5


@dataclass
class Job:
    id: str
    out_dir: Path
    n_points: int
    description: str
    started: float = field(default_factory=time.time)
    future: Future[Any] | None = None
    error: str = ""
    finished: float | None = None


def _refine(param: str, values: Sequence[Any]) -> list[Any]:
    vals = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    if param in ("profile", "mode", "kernel", "numa_hinting") or len(vals) < 2:
        return list(vals)
    lo, hi = float(vals[0]), float(vals[-1])
    if param == "folio_kb":
        return [2**e for e in range(int(math.log2(lo)), int(math.log2(hi)) + 1)]
    if param in ("busy_prob", "writeback_prob", "alloc_fail_prob"):
        grid = np.linspace(lo, hi, REFINE_VALUES)
        return sorted({float(round(v, 6)) for v in grid} | {float(v) for v in vals})
    grid = np.geomspace(max(lo, 1e-9), hi, REFINE_VALUES)
    if param in ("access_rate_hz", "writeback_wait_s"):
        return sorted({float(f"{v:.4g}") for v in grid} | {float(v) for v in vals})
    return sorted({int(round(v)) for v in grid} | {int(v) for v in vals})


class RegionError(UserError):
    """A region request that does not describe cells of the results (the browser sent it: HTTP 400)."""


@dataclass(frozen=True)
class Region:
    """Selected cells of a landscape, checked against the results they were selected in."""

    profile: str
    workload: dict[str, Any]
    axes: dict[str, list[Any]]
    model: str


def _swept(name: str, value: Any, swept: Sequence[Any]) -> Any:
    """``value`` (from JSON: 1000 for 1000.0) as the swept value it names, or None if it names none."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    v = value if name == "profile" else coerce_value(name, value)
    return v if v in swept else None


def parse_region(results: Results, region: Any) -> Region:
    """Check a region request (JSON from the browser) against ``results``: the model and profiles
    are in the sweep, the axes are one or two parameters (``profile`` or workload parameters) whose
    values are all swept, and the workload names swept values. Raises :class:`RegionError`."""
    if not isinstance(region, Mapping):
        raise RegionError("region: expected an object with axes, profile, model and workload")
    unknown = sorted(set(region) - {"axes", "profile", "model", "workload"})
    if unknown:
        raise RegionError(f"region: unknown field(s) {', '.join(map(str, unknown))}")
    model = region.get("model", results.default_model)
    if not isinstance(model, str) or model not in results.models:
        raise RegionError(f"region.model: {model!r} is not in the results ({', '.join(results.models)})")
    profiles = results.profiles(model)
    profile = region.get("profile")
    if not isinstance(profile, str) or profile not in profiles:
        raise RegionError(f"region.profile: {profile!r} is not in the results ({', '.join(profiles)})")
    axes = region.get("axes")
    if not isinstance(axes, Mapping) or not 1 <= len(axes) <= 2:
        raise RegionError(
            "region.axes: expected an object of one or two parameters, each with a list of values"
        )
    values = results.workload_values(profile, model)
    swept: dict[str, list[Any]] = {**values, "profile": list(profiles)}
    checked: dict[str, list[Any]] = {}
    for name, vals in axes.items():
        if name not in swept:
            raise RegionError(f"region.axes: {name!r} is not a parameter of the landscape")
        if not isinstance(vals, list) or not vals or len(vals) > len(swept[name]):
            raise RegionError(f"region.axes.{name}: expected a list of swept values")
        found = [_swept(name, v, swept[name]) for v in vals]
        if None in found:
            raise RegionError(
                f"region.axes.{name}: {vals[found.index(None)]!r} is not in the results "
                f"(swept: {', '.join(map(str, swept[name]))})"
            )
        checked[str(name)] = found
    workload = region.get("workload", {})
    if not isinstance(workload, Mapping):
        raise RegionError("region.workload: expected an object of workload parameters")
    wl: dict[str, Any] = {}
    for name, v in workload.items():
        if name not in values:
            raise RegionError(f"region.workload: {name!r} is not a workload parameter")
        hit = None if v is None else _swept(name, v, values[name])
        if v is not None and hit is None:
            raise RegionError(f"region.workload.{name}: {v!r} is not in the results for {profile}")
        wl[str(name)] = hit
    return Region(profile=profile, workload=wl, axes=checked, model=model)


def region_spec(results: Results, region: Region) -> dict[str, Any]:
    """A sweep spec (as a dict) refining the selected cells: finer axes and batch limits; seed,
    models and replicas as in the results' own spec."""
    profile, workload, axes, m = region.profile, region.workload, region.axes, region.model
    sel_profiles = list(axes.get("profile", [profile]))
    swept = results.choice_values([str(p) for p in sel_profiles])  # distinct values, one query
    existing_bl = sorted({int(v) for v in swept["batch_limit_pages"]})
    bl_max = max(existing_bl) if existing_bl else 4096
    batch = sorted(set(existing_bl) | {2**e for e in range(0, int(math.log2(bl_max)) + 1)} | {512})
    engines = sorted({str(v) for v in swept["copy_engine"]})
    threads = sorted({int(v) for v in swept["copy_threads"]})
    fixed: dict[str, Any] = {}
    ax: dict[str, Any] = {}
    if "profile" in axes:
        ax["profile"] = sel_profiles
    else:
        fixed["profile"] = profile
    for k in KEY_WORKLOAD:
        if k in axes:
            ax[k] = _refine(k, axes[k])
        elif "profile" not in axes or k not in ("target_cpus",):
            v = workload.get(k)
            if v is not None:
                fixed[k] = v.item() if isinstance(v, np.generic) else v
    ax["batch_limit_pages"] = batch
    ax["copy_engine"] = engines
    ax["copy_threads"] = threads
    n = math.prod(len(v) for v in ax.values())
    if n > MAX_REGION_POINTS:
        ax["batch_limit_pages"] = existing_bl
        n = math.prod(len(v) for v in ax.values())
    if n > MAX_REGION_POINTS:
        raise UserError(
            f"the selected region needs {n:,} points (limit {MAX_REGION_POINTS:,}); select fewer cells"
        )
    spec = results.sweep.spec
    models = [mm for mm in spec.models if mm in MODELS] or [m]
    sweep = {
        "seed": spec.seed,
        "models": models,
        "replicas": spec.replicas,
        "sampler": "grid",
        "name": f"explorer region: {', '.join(f'{k}={v}' for k, v in axes.items())}"[:200],
    }
    return {"sweep": sweep, "fixed": fixed, "axes": ax}


class SweepJobs:
    """Sweeps running in one background thread; progress read from their folders."""

    def __init__(self, sweeps_dir: Path, backend: str = "ray", workers: int | None = None) -> None:
        self.sweeps_dir = Path(sweeps_dir)
        self.backend = backend
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="foliotune-sweep")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def launch(self, spec_dict: Mapping[str, Any]) -> Job:
        spec = spec_from_dict(dict(spec_dict), source="explorer region")
        out = self.sweeps_dir / f"region-{spec.hash}"
        with self._lock:
            job = self._jobs.get(spec.hash)
            if job is not None and (job.future is None or not job.future.done() or not job.error):
                return job
            job = Job(id=spec.hash, out_dir=out, n_points=spec.n_points, description=spec.name)
            self._jobs[spec.hash] = job
        self.sweeps_dir.mkdir(parents=True, exist_ok=True)
        job.future = self._pool.submit(self._run, job, spec)
        return job

    def _run(self, job: Job, spec: Any) -> None:
        try:
            run_sweep(spec, job.out_dir, workers=self.workers, progress=False, yes=True, backend=self.backend)
        except UserError as exc:
            job.error = str(exc)
        except Exception as exc:  # shown on the Sweeps page; the app goes on
            job.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            job.finished = time.time()

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def progress(self, job: Job) -> dict[str, Any]:
        """{state, done, total, fraction, error} for a job (state: queued, running, done, failed)."""
        done = 0
        try:
            if job.out_dir.is_dir():
                done = sweep_status(job.out_dir, verify="size").points_done
        except Exception:
            done = 0
        fut = job.future
        if job.error:
            state = "failed"
        elif fut is not None and fut.done():
            state = "done"
            done = job.n_points
        elif fut is not None and fut.running():
            state = "running"
        else:
            state = "queued"
        total = max(job.n_points, 1)
        return {
            "state": state,
            "done": done,
            "total": job.n_points,
            "fraction": min(done / total, 1.0),
            "error": job.error,
        }

    def running(self) -> bool:
        return any(j.future is not None and not j.future.done() for j in self.jobs())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
