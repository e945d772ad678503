"""``foliotune measure``: measure this machine and write measurement rows plus a ``local`` profile.

Writes, in ``--out DIR``:

- ``measurements-<name>.csv``: rows in the measurement schema (``models/data/MEASUREMENTS.md``);
- ``<name>.toml``: a hardware profile; use it with ``FOLIOTUNE_PROFILE_PATH=DIR`` (e.g.
  ``FOLIOTUNE_PROFILE_PATH=DIR foliotune predict --points p.csv ...`` with ``profile = local``, or
  ``foliotune fit --measurements DIR/measurements-local.csv`` with that variable set);
- ``measure-<name>.json``: everything measured, including figures no schema metric can express.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import typer

from models.errors import UserError

DEFAULT_OUT = Path("measurements")


def register(cli: typer.Typer) -> None:
    @cli.command("measure")
    def measure(
        quick: bool = typer.Option(False, "--quick", help="Fewer sizes and repeats; under 30 s."),
        out: Path = typer.Option(
            DEFAULT_OUT, "--out", help="Folder for the CSV rows, the profile and the report."
        ),
        profile_name: str = typer.Option("local", "--profile-name", help="Name of the profile written."),
        kernel: bool = typer.Option(
            False,
            "--kernel",
            help="Also drive real migrate_pages() calls of the running kernel, timed through tracefs "
            "(root; memory hotplug on one NUMA node, move_pages between nodes), and fit the profile's "
            "migration costs to them. Changes sysfs settings for the run and restores every one.",
        ),
        kernel_repeats: int = typer.Option(
            5, "--kernel-repeats", min=1, max=50, help="Calls per folio size and CPU count (best and median)."
        ),
    ) -> None:
        """Measure copy bandwidth, TLB-shootdown and move_pages() cost here (schema rows + profile)."""
        # imported when the command runs: app.cli loads this module at every start
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from models.measure import check_out_dir, plan_steps, read_topology, run_measurements, write_outputs

        if not profile_name or not all(ch.isalnum() or ch in "-_." for ch in profile_name):
            raise UserError(f"--profile-name {profile_name!r}: use letters, digits, '-', '_' or '.'")
        out_dir = check_out_dir(out)  # fail before minutes of measuring
        console = Console(stderr=True)
        topo = read_topology()
        command = (
            "foliotune " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            if sys.argv[1:]
            else "foliotune measure"
        )
        with Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            # imported when the command runs: app.cli loads this module at every start
            from models.measure import Settings

            settings = Settings.for_machine(topo, quick)
            task = bar.add_task("measuring", total=plan_steps(topo, settings))

            def step(name: str) -> None:
                bar.update(task, advance=1, description=name)

            rep = run_measurements(topo, quick=quick, progress=step, settings=settings)
            bar.update(task, description="done")
        paths = write_outputs(rep, out_dir, profile_name, command)
        _print_summary(console, rep, paths)
        if kernel:
            _measure_kernel(console, rep, paths, profile_name, command, kernel_repeats)

    del measure


def _measure_kernel(console, rep, paths, profile_name, command, repeats) -> None:  # type: ignore[no-untyped-def]
    """``--kernel``: real migrations, rows, fitted profile; one line and no failure when unavailable."""

    # imported when the command runs: app.cli loads this module at every start
    from rich.table import Table

    from models.measure import source_id
    from models.measure.kernel_run import check_kernel_support, folio_sizes_kb, run_kernel_measurements
    from models.measure.output import write_kernel_outputs
    from models.measure.sysstate import Unavailable

    topo = rep.topology
    t0 = time.perf_counter()
    try:
        check_kernel_support(topo)
        sizes = folio_sizes_kb()
        console.print(
            f"--kernel: {len(sizes)} folio sizes × {topo.nproc} CPU count(s) × {repeats} calls; every "
            "setting changed is said first and restored at the end (also on Ctrl-C)"
        )
        krep = run_kernel_measurements(
            topo,
            repeats=repeats,
            sizes_kb=sizes,
            say=lambda m: console.print(f"  {m}", soft_wrap=True),
            progress=None,
        )
    except Unavailable as exc:
        print(f"--kernel skipped: {exc}", file=sys.stderr, flush=True)
        return
    for line in krep.restored:
        console.print(f"  restored: {line}", soft_wrap=True)
    for line in krep.skipped:
        console.print(f"[yellow]  kernel: {line}[/yellow]", soft_wrap=True)
    if not krep.calls:
        console.print("--kernel: no migration could be traced (see above); profile not fitted")
        return
    extra = write_kernel_outputs(
        krep, topo, paths, profile_name, command, rep.date, source_id(rep) + "-kernel"
    )
    t = Table(title=f"real migrate_pages(), Linux {topo.kernel} ({time.perf_counter() - t0:.0f} s)")
    for c in ("folio", "measured GB/s", "model GB/s", "error", "flushes/folio", "model", "error "):
        t.add_column(c, justify="right")
    for r in extra.get("residuals", []):
        t.add_row(
            f"{r['folio_kb']} KiB",
            f"{r['measured_gbps']:.2f}",
            f"{r['predicted_gbps']:.2f}",
            f"{r['throughput_error']:.0%}",
            f"{r['measured_flush_per_folio']:.4g}",
            f"{r['predicted_flush_per_folio']:.4g}",
            f"{r['flush_per_folio_error']:.0%}",
        )
    console.print(t)
    console.print(
        f"{extra.get('rows', 0)} real-migration rows added to {paths['measurements']}; "
        f"{paths['profile']} fitted to them"
    )


def _print_summary(console, rep, paths) -> None:  # type: ignore[no-untyped-def]
    # imported when the command runs: app.cli loads this module at every start
    from rich.table import Table

    d = rep.derived
    topo = rep.topology

    def gbps(x: float | None) -> str:
        return "—" if x is None else f"{x / 1e9:.2f} GB/s"

    def us(x: float | None) -> str:
        return "—" if x is None else f"{x * 1e6:.2f} µs"

    t = Table(title=f"foliotune measure: {topo.hostname} ({rep.wall_s:.1f} s)", show_header=True)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row(
        "CPUs / sockets / cores / SMT",
        f"{topo.nproc} / {topo.sockets} / {topo.cores} / {topo.smt}"
        + (" (VM)" if topo.virtual_machine else ""),
    )
    t.add_row("NUMA nodes with memory", str(len(topo.memory_nodes)))
    t.add_row(
        "LLC (reported) / copy buffer",
        f"{topo.llc_bytes >> 20} MiB / {rep.settings.mem_buffer_bytes >> 20} MiB",
    )
    mem = {r.params["folio_kb"]: r.value for r in rep.results if r.variant == "memory"}
    hot = {r.params["folio_kb"]: r.value for r in rep.results if r.variant == "cache-hot"}
    for kb in sorted(mem):
        t.add_row(f"copy {kb} KiB: memory / cache-hot", f"{gbps(mem[kb])} / {gbps(hot.get(kb))}")
    t.add_row("copy, one Python call per 4 KiB", gbps(d.get("python_call_per_4k_bytes_per_s")))
    t.add_row("1-thread copy fit: bandwidth", gbps(d.get("cpu_copy_bytes_per_s")))
    t.add_row("1-thread copy fit: fixed per chunk", us(d.get("cpu_copy_fixed_s")))
    for r in sorted(
        (r for r in rep.results if r.variant == "memory-threads"),
        key=lambda r: (r.params["folio_kb"], r.params["copy_threads"]),
    ):
        t.add_row(f"copy {r.params['folio_kb']} KiB × {r.params['copy_threads']} threads", gbps(r.value))
    if "mt_sigma" in d:
        t.add_row("USL sigma / kappa", f"{d['mt_sigma']:.3f} / {d['mt_kappa']:.3f}")
    for r in rep.results:
        if r.metric == "tlb_shootdown_s":
            t.add_row(f"TLB {r.variant}, {r.params['target_cpus']} CPU(s)", us(r.value))
    irq = d.get("tlb_irqs_per_round")
    t.add_row(
        "TLB IRQs per madvise round",
        irq if isinstance(irq, str) else ", ".join(f"{k} CPU: {v:.2f}" for k, v in irq.items()),
    )
    for v in ("move_pages-status-query", "move_pages-same-node-move"):
        if f"{v}_call_s" in d:
            t.add_row(f"{v}: per call / per page", f"{us(d[f'{v}_call_s'])} / {us(d[f'{v}_page_s'])}")
    console.print(t)
    for s in rep.skipped:
        console.print(f"[yellow]skipped:[/yellow] {s}")
    console.print(
        "move_pages() rows on one node measure the system-call path, not a migration: "
        "they are in the JSON report only."
        if len(topo.memory_nodes) < 2
        else "NUMA migration rows are real migrations between nodes."
    )
    for k, p in paths.items():
        console.print(f"{k}: {p}")
    here = os.path.abspath(paths["profile"].parent)
    console.print(f"use the profile: export FOLIOTUNE_PROFILE_PATH={here}")
