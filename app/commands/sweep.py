"""``foliotune sweep SPEC --out DIR`` and ``foliotune sweep status DIR``.

``sweep`` is a command group with two sub-commands, ``run`` and ``status``; ``run`` is the default,
so ``foliotune sweep SPEC --out DIR`` is ``foliotune sweep run SPEC --out DIR`` (a spec file
literally named ``status`` or ``run`` is given as ``./status``). Ray and pyarrow are imported only
when a command runs.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from models.errors import UserError

HELP = """Run a parameter sweep (spec TOML) on Ray into a resumable Parquet folder, or show its progress.

\b
  foliotune sweep SPEC --out DIR [--address ADDR] [--workers N] [--chunk-points N] [--max-points N] [--yes]
  foliotune sweep status DIR

Rerunning the same spec into the same folder runs only the missing chunks. Without --address (or
RAY_ADDRESS) Ray runs embedded on this machine (127.0.0.1)."""


class _RunByDefault(TyperGroup):
    """A group whose first argument, when it is not a sub-command, starts ``run``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _status_lines(st: Any, reasons: dict[str, int]) -> list[str]:
    if st.complete:
        state = "complete (every chunk file verified)" if st.verified == "full" else "complete"
    elif st.chunks_damaged or st.chunks_missing:
        state = "incomplete: damaged or missing chunk files (rerun the same spec to recompute them)"
    elif st.stray_files:
        state = "not clean: files that are not chunks of this sweep (Parquet readers of the folder would read them)"
    else:
        state = "incomplete (rerun the same spec to resume)"
    pct = 100.0 * st.points_done / st.n_points if st.n_points else 100.0
    lines = [
        f"folder:      {st.folder}" + (f"  ({st.name})" if st.name else ""),
        f"spec:        {st.spec_source}  hash {st.spec_hash}",
        f"code:        {st.code_version}",
        f"models:      {', '.join(st.models)}",
        f"points:      {st.points_done:,} of {st.n_points:,} ({pct:.1f}%); {st.n_rows:,} rows",
        f"chunks:      {st.chunks_done} of {st.chunks_total} ({st.chunk_points:,} points each)",
        f"infeasible:  {st.infeasible_points:,} points" + ("" if st.complete else " so far"),
        *(f"  {n:>10,}  {reason}" for reason, n in reasons.items()),
        f"on disk:     {st.bytes / 1e6:,.1f} MB",
        f"updated:     {st.updated}",
        f"state:       {state}",
    ]
    if st.chunks_damaged:
        shown = ", ".join(st.damaged_files[:5]) + (" …" if len(st.damaged_files) > 5 else "")
        lines.append(f"damaged:     {st.chunks_damaged} chunk file(s) fail verification ({shown})")
    if st.chunks_missing:
        lines.append(f"missing:     {st.chunks_missing} recorded chunk file(s) are gone")
    if st.chunks_unrecorded:
        lines.append(f"note:        {st.chunks_unrecorded} chunk file(s) not yet in the manifest")
    if st.stray_files:
        shown = ", ".join(st.stray_files[:5]) + (" …" if len(st.stray_files) > 5 else "")
        lines.append(f"stray:       {len(st.stray_files)} file(s): {shown}")
    return lines


def _print_status(out_dir: str, as_json: bool) -> None:
    # imported when the command runs: app.cli loads this module at every start
    from sweep.results import open_results

    res = open_results(out_dir)
    reasons = res.infeasible_reasons()
    if as_json:
        d = res.status.to_dict()
        d["infeasible_reasons"] = reasons
        print(json.dumps(d, indent=1))
        return
    print("\n".join(_status_lines(res.status, reasons)))


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so the same clean-up runs."""


def _terminate_as_interrupt(signum: int, _frame: object) -> None:
    """SIGTERM: stop like Ctrl-C (finished chunks are kept), once, without a stack dump."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Terminated


def register(cli: typer.Typer) -> None:
    group = typer.Typer(cls=_RunByDefault, help=HELP, no_args_is_help=True)
    cli.add_typer(group, name="sweep")

    @group.command("status")
    def status_cmd(
        folder: Annotated[str, typer.Argument(help="The sweep folder.", metavar="DIR")],
        as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    ) -> None:
        """Progress and integrity of a sweep folder: every chunk file is verified."""
        _print_status(folder, as_json)

    @group.command("run", help=HELP, no_args_is_help=True)
    def run_cmd(
        spec: Annotated[str, typer.Argument(help="Sweep spec (TOML).", metavar="SPEC")],
        out: Annotated[
            str | None, typer.Option("--out", "-o", help="Output folder (default: sweep.out of the spec).")
        ] = None,
        address: Annotated[
            str | None,
            typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS, else embedded Ray)."),
        ] = None,
        workers: Annotated[
            int | None, typer.Option("--workers", min=1, help="Parallel tasks (embedded: CPUs; default all).")
        ] = None,
        chunk_points: Annotated[
            int | None,
            typer.Option("--chunk-points", min=1, help="Points per chunk/task (default: ≈0.5 s of work)."),
        ] = None,
        max_points: Annotated[
            int | None,
            typer.Option("--max-points", min=1, help="Refuse sweeps with more rows than this (default 5e7)."),
        ] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Run even above --max-points.")] = False,
        serial: Annotated[bool, typer.Option("--serial", help="Evaluate in this process (no Ray).")] = False,
        progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        # imported when the command runs: app.cli loads this module at every start
        from sweep.executors import make_executor
        from sweep.runner import run_sweep

        def echo(msg: str) -> None:
            if not as_json:
                typer.echo(msg, err=True)

        executor = make_executor("serial" if serial else "ray", address=address, workers=workers)
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
        try:
            summary = run_sweep(
                spec,
                out,
                chunk_points=chunk_points,
                progress=progress and not as_json,
                max_points=max_points,
                yes=yes,
                executor=executor,
                echo=echo,
            )
        except UserError:
            raise
        except KeyboardInterrupt as exc:
            what, code = ("terminated", 143) if isinstance(exc, _Terminated) else ("interrupted", 130)
            print(f"foliotune: sweep {what}; finished chunks are kept, rerun to resume", file=sys.stderr)
            raise SystemExit(code) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        if as_json:
            print(json.dumps(summary.to_dict(), indent=1))
        else:
            print(summary.describe())
