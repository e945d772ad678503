"""The ``foliotune`` command line.

Each area of the code registers its own sub-commands from a module in ``app/commands/`` that
defines ``register(cli: typer.Typer) -> None``. Command modules import heavy libraries (ray, dash,
sklearn) inside the command functions, so ``foliotune --help`` stays fast.

Errors a user can fix (:class:`models.errors.UserError`) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from models.errors import UserError

COMMAND_MODULES = (
    "app.commands.model",  # profiles, predict, validate, bench, run
    "app.commands.sweep",  # sweep, sweep status
    "app.commands.measured",  # fit, calibrate, (validate extensions)
    "app.commands.measure",  # measure
    "app.commands.explore",  # explore, recommend
    "app.commands.trace",  # import-trace
)


def build_cli() -> typer.Typer:
    cli = typer.Typer(
        name="foliotune",
        help="Model, sweep and tune Linux batched page migration (migrate_pages()).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(cli)
    return cli


def fail(message: str) -> None:
    """Print a one-line error and exit with status 2."""
    first = " ".join(str(message).split())
    print(f"foliotune: error: {first}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    cli = build_cli()
    try:
        cli(args=argv, prog_name="foliotune", standalone_mode=True)
    except UserError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        print("foliotune: interrupted; finished work is kept", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
