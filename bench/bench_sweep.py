"""Sweep benchmarks (issue 3 bars). Writes bench/RESULTS-sweep.md and prints JSON.

    .venv/bin/python bench/bench_sweep.py            # everything (~5-8 min on 2 cores)
    .venv/bin/python bench/bench_sweep.py --quick    # smaller sizes, no 3e7 run, short Tune budget

``run_benchmarks(quick=False)`` is the function a ``foliotune bench sweep`` command can call.

1. Throughput: the same chunk evaluator (``sweep.chunks.compute_chunk``) in one process versus
   through Ray with 2 workers writing Parquet (Ray already started; start-up reported apart).
   Overhead = (Ray wall time × workers) / in-process time − 1.
2. 10 million analytic points, spec → Parquet on disk, as a fresh driver process (Ray start-up
   included), and the driver's peak RSS for 1e6, 1e7 and 3e7 points.
3. The same 10,000-point grid through Ray Tune ``grid_search`` (one trial per point) versus
   foliotune (points/s ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).absolute().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MC_SPEC = """
[sweep]
seed = 1
models = ["montecarlo"]
replicas = 64
[fixed]
profile = "epyc-zen3-2s"
copy_engine = "mt-cpu"
[axes]
batch_limit_pages = {{ log2_start = 0, log2_stop = 12 }}
folio_kb = [4, 64, 2048]
copy_threads = [1, 2, 4, 8]
busy_prob = {{ start = 0.0, stop = 0.1, num = {num} }}
"""

ANALYTIC_SPEC = """
[sweep]
seed = 1
models = ["analytic"]
[fixed]
profile = "epyc-zen3-2s"
[axes]
n_folios = {{ start = 16, stop = 1048576, num = {num}, log = true }}
batch_limit_pages = {{ log2_start = 0, log2_stop = 12 }}
folio_kb = [4, 16, 64, 512, 2048]
copy_engine = ["mt-cpu", "dma"]
copy_threads = [1, 2, 4, 8]
busy_prob = {{ start = 0.0, stop = 0.1, num = 10 }}
"""
ANALYTIC_PER_NUM = 13 * 5 * 2 * 4 * 10  # points per unit of `num`

DRIVER = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from sweep.runner import run_sweep
s = run_sweep(sys.argv[1], sys.argv[2], progress=False, max_points=10**9)
print(json.dumps({"wall_s": time.perf_counter() - t0, "sweep_s": s.seconds, "points": s.n_points,
                  "chunk_points": s.chunk_points, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def _analytic_spec(points: int, tmp: Path) -> tuple[Path, int]:
    num = max(1, round(points / ANALYTIC_PER_NUM))
    path = tmp / f"analytic-{num}.toml"
    path.write_text(ANALYTIC_SPEC.format(num=num))
    return path, num * ANALYTIC_PER_NUM


def bench_throughput(tmp: Path, quick: bool) -> dict[str, float]:
    from sweep.chunks import compute_chunk, n_chunks
    from sweep.ray_backend import connect
    from sweep.runner import run_sweep
    from sweep.spec import spec_from_toml

    spec = spec_from_toml(MC_SPEC.format(num=4 if quick else 12))
    compute_chunk(spec, spec.hash, 0, 64)  # warm up (JIT, imports)
    per_point = compute_chunk(spec, spec.hash, 0, 256).seconds / 256
    cp = max(64, int(0.5 / max(per_point, 1e-9)))
    chunks = n_chunks(spec.n_points, cp)
    t = time.perf_counter()
    for c in range(chunks):
        compute_chunk(spec, spec.hash, c, cp)
    serial_s = time.perf_counter() - t
    t = time.perf_counter()
    session = connect(workers=2)
    startup_s = time.perf_counter() - t
    try:
        # Warm the workers (process start, imports, JIT) so start-up is not counted as throughput.
        run_sweep(spec, tmp / "warm", workers=2, chunk_points=cp, progress=False)
        summary = run_sweep(spec, tmp / "ray", workers=2, chunk_points=cp, progress=False)
    finally:
        import ray

        if session.started_here:
            ray.shutdown()
    ray_s = summary.seconds
    return {
        "points": spec.n_points,
        "chunk_points": cp,
        "chunks": chunks,
        "serial_s": serial_s,
        "serial_points_per_s": spec.n_points / serial_s,
        "ray_s": ray_s,
        "ray_points_per_s": spec.n_points / ray_s,
        "speedup": serial_s / ray_s,
        "overhead": ray_s * 2 / serial_s - 1.0,
        "ray_startup_s": startup_s,
    }


def _driver_run(spec: Path, out: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(spec), str(out)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["bytes"] = sum(p.stat().st_size for p in out.glob("part-*.parquet"))
    shutil.rmtree(out, ignore_errors=True)
    return result


def bench_scale(tmp: Path, quick: bool) -> dict[str, dict[str, float]]:
    sizes = {"1e6": 1_000_000, "1e7": 10_000_000} if not quick else {"1e5": 100_000, "1e6": 1_000_000}
    if not quick:
        sizes["3e7"] = 30_000_000
    out = {}
    for label, n in sizes.items():
        spec, actual = _analytic_spec(n, tmp)
        r = _driver_run(spec, tmp / f"scale-{label}")
        r["points"] = actual
        out[label] = r
    return out


def _tune_point(config: dict) -> dict:
    import pandas as pd

    from models.evaluate import evaluate

    row = evaluate(pd.DataFrame([config]), "analytic", on_invalid="mark").iloc[0]
    return {"pages_per_s": float(row["pages_per_s"]) if row["infeasible"] == "" else float("nan")}


def bench_tune(tmp: Path, quick: bool) -> dict[str, float]:
    """10,000 points (grid_search over 4 axes) through Ray Tune, one trial per point, vs foliotune."""
    import ray
    from ray import tune

    from sweep.runner import run_sweep
    from sweep.spec import spec_from_dict

    axes = {
        "batch_limit_pages": [2**k for k in range(10)],
        "copy_threads": [1, 2, 4, 8, 16],
        "n_folios": [64 * 2**k for k in range(10)],
        "busy_prob": [round(0.01 * k, 2) for k in range(20)],
    }
    spec = spec_from_dict(
        {
            "sweep": {"models": ["analytic"]},
            "fixed": {"profile": "epyc-zen3-2s", "copy_engine": "mt-cpu"},
            "axes": axes,
        }
    )
    assert spec.n_points == 10_000
    budget = 60 if quick else 300
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        t = time.perf_counter()
        summary = run_sweep(spec, tmp / "tune-foliotune", workers=2, progress=False)
        foliotune_s = time.perf_counter() - t
        space = {k: tune.grid_search(v) for k, v in axes.items()}
        space.update(profile="epyc-zen3-2s", copy_engine="mt-cpu")
        tuner = tune.Tuner(
            tune.with_resources(_tune_point, {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(time_budget_s=budget, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(tmp / "tune"), verbose=0),
        )
        t = time.perf_counter()
        grid = tuner.fit()
        tune_s = time.perf_counter() - t
        done = sum(1 for r in grid if r.error is None and r.metrics and "pages_per_s" in r.metrics)
    finally:
        ray.shutdown()
    return {
        "points": spec.n_points,
        "foliotune_s": foliotune_s,
        "foliotune_points_per_s": spec.n_points / foliotune_s,
        "foliotune_sweep_s": summary.seconds,
        "tune_budget_s": budget,
        "tune_trials_done": done,
        "tune_s": tune_s,
        "tune_points_per_s": done / tune_s,
        "ratio": (spec.n_points / foliotune_s) / max(done / tune_s, 1e-9),
    }


def write_results(res: dict, path: Path, command: str) -> None:
    th, sc, tu = res["throughput"], res["scale"], res.get("tune")
    lines = [
        "# Sweep benchmarks",
        "",
        f"Measured {res['date']} on {res['machine']} ({res['cpus']} CPUs), `{command}`.",
        f"Load average when it started: {res['load_at_start']:.2f} (2 CPUs; above ~1 the figures are pessimistic).",
        "",
        "| bar | target | measured | met |",
        "| --- | --- | --- | --- |",
        f"| Ray (2 workers, Parquet) vs single-process, same evaluator | ≥ 1.7× | {th['speedup']:.2f}× "
        f"({th['ray_points_per_s']:,.0f} vs {th['serial_points_per_s']:,.0f} points/s, Monte Carlo, "
        f"{th['points']:,} points, {th['chunks']} chunks) | {'yes' if th['speedup'] >= 1.7 else 'no'} |",
        f"| Ray + Parquet overhead vs in-process (wall × workers / in-process − 1) | ≤ 15% | "
        f"{100 * th['overhead']:.1f}% | {'yes' if th['overhead'] <= 0.15 else 'no'} |",
    ]
    big = sc.get("1e7")
    if big:
        lines.append(
            f"| 10 million analytic points, spec → Parquet, fresh driver incl. Ray start | < 60 s | "
            f"{big['wall_s']:.1f} s ({big['points']:,} points, sweep {big['sweep_s']:.1f} s, "
            f"{big['bytes'] / 1e6:,.0f} MB) | {'yes' if big['wall_s'] < 60 else 'no'} |"
        )
    if "1e6" in sc and "3e7" in sc:
        a, b = sc["1e6"]["peak_rss_mb"], sc["3e7"]["peak_rss_mb"]
        diff = abs(b - a) / a
        lines.append(
            f"| driver peak RSS, 1e6 vs 3e7 analytic points | differ < 25% | {a:,.0f} MB vs {b:,.0f} MB "
            f"({100 * diff:.1f}%) | {'yes' if diff < 0.25 else 'no'} |"
        )
    if tu:
        lines.append(
            f"| 10,000-point grid: foliotune vs Ray Tune grid_search (one trial per point) | report | "
            f"{tu['ratio']:,.0f}× ({tu['foliotune_points_per_s']:,.0f} vs {tu['tune_points_per_s']:,.1f} "
            f"points/s; Tune finished {tu['tune_trials_done']:,} trials in its {tu['tune_budget_s']} s budget) | — |"
        )
    lines += ["", "Scale runs (fresh driver process each; wall time includes Python and Ray start-up):", ""]
    lines += [
        "| points | wall s | sweep s | points/s (sweep) | chunk points | driver peak RSS MB | Parquet MB |"
    ]
    lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
    for r in sc.values():
        lines.append(
            f"| {r['points']:,} | {r['wall_s']:.1f} | {r['sweep_s']:.1f} | {r['points'] / r['sweep_s']:,.0f} | "
            f"{r['chunk_points']:,} | {r['peak_rss_mb']:,.0f} | {r['bytes'] / 1e6:,.0f} |"
        )
    lines += ["", f"Ray start-up (embedded, 2 CPUs): {th['ray_startup_s']:.1f} s.", ""]
    lines += ["Raw figures:", "", "```json", json.dumps(res, indent=1), "```", ""]
    path.write_text("\n".join(lines))


def run_benchmarks(quick: bool = False, out_md: Path | None = None, tune_bench: bool = True) -> dict:
    res: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_at_start": os.getloadavg()[0],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="ft-bench-") as d:
        tmp = Path(d)
        res["throughput"] = bench_throughput(tmp, quick)
        print(json.dumps({"throughput": res["throughput"]}), flush=True)
        res["scale"] = bench_scale(tmp, quick)
        print(json.dumps({"scale": res["scale"]}), flush=True)
        if tune_bench:
            res["tune"] = bench_tune(tmp, quick)
            print(json.dumps({"tune": res["tune"]}), flush=True)
    command = ".venv/bin/python bench/bench_sweep.py" + (" --quick" if quick else "")
    write_results(res, out_md or ROOT / "bench" / "RESULTS-sweep.md", command)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-tune", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    run_benchmarks(quick=args.quick, out_md=args.out, tune_bench=not args.no_tune)


if __name__ == "__main__":
    main()
