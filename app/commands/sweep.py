"""``foliotune sweep SPEC --out DIR`` and ``foliotune sweep status DIR``.

Both forms are one typer command whose first argument is either a spec file or the word ``status``
(a spec file literally named ``status`` can be given as ``./status``). Ray and pyarrow are imported
only when the command runs.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from models.errors import UserError

HELP = """Run a parameter sweep (spec TOML) on Ray into a resumable Parquet folder, or show its progress.

\b
  foliotune sweep SPEC --out DIR [--address ADDR] [--workers N] [--chunk-points N] [--max-points N] [--yes]
  foliotune sweep status DIR

Rerunning the same spec into the same folder runs only the missing chunks. Without --address (or
RAY_ADDRESS) Ray runs embedded on this machine (127.0.0.1)."""


def _print_status(out_dir: str, as_json: bool) -> None:
    from sweep.storage import infeasible_reasons, sweep_status

    st = sweep_status(out_dir)
    st["infeasible_reasons"] = infeasible_reasons(out_dir) if st["infeasible_points"] else {}
    if as_json:
        print(json.dumps(st, indent=1))
        return
    state = "complete" if st["complete"] else "incomplete (rerun the same spec to resume)"
    pct = 100.0 * st["points_done"] / st["n_points"] if st["n_points"] else 100.0
    lines = [
        f"folder:      {st['folder']}" + (f"  ({st['name']})" if st["name"] else ""),
        f"spec:        {st['spec_source']}  hash {st['spec_hash']}",
        f"code:        {st['code_version']}",
        f"models:      {', '.join(st['models'])}",
        f"points:      {st['points_done']:,} of {st['n_points']:,} ({pct:.1f}%); {st['n_rows']:,} rows",
        f"chunks:      {st['chunks_done']} of {st['chunks_total']} ({st['chunk_points']:,} points each)",
        f"infeasible:  {st['infeasible_points']:,} points" + ("" if st["complete"] else " so far"),
        *(f"  {n:>10,}  {reason}" for reason, n in st["infeasible_reasons"].items()),
        f"on disk:     {st['bytes'] / 1e6:,.1f} MB",
        f"updated:     {st['updated']}",
        f"state:       {state}",
    ]
    if st["chunks_unrecorded"]:
        lines.append(f"note:        {st['chunks_unrecorded']} chunk file(s) not yet in the manifest")
    print("\n".join(lines))


def register(cli: typer.Typer) -> None:
    @cli.command("sweep", help=HELP, no_args_is_help=True)
    def sweep_cmd(
        spec: Annotated[
            str, typer.Argument(help="Sweep spec (TOML), or the word 'status'.", metavar="SPEC|status")
        ],
        status_dir: Annotated[
            str | None,
            typer.Argument(help="With 'status': the sweep folder.", metavar="[DIR]", show_default=False),
        ] = None,
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
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary/status as JSON.")] = False,
    ) -> None:
        if spec == "status":
            if status_dir is None:
                raise UserError("sweep status: give the sweep folder (foliotune sweep status DIR)")
            _print_status(status_dir, as_json)
            return
        if status_dir is not None:
            raise UserError(f"sweep: unexpected argument {status_dir!r} (use --out DIR for the output)")
        from sweep.runner import run_sweep

        def echo(msg: str) -> None:
            if not as_json:
                typer.echo(msg, err=True)

        summary = run_sweep(
            spec,
            out,
            address=address,
            workers=workers,
            chunk_points=chunk_points,
            progress=progress and not as_json,
            max_points=max_points,
            yes=yes,
            backend="serial" if serial else "ray",
            echo=echo,
        )
        if as_json:
            print(json.dumps(summary.to_dict(), indent=1))
        else:
            print(summary.describe())
