"""The ``bitbudget`` command line: one Typer app; each command group lives in its own module."""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="bitbudget",
    help="Mixed-precision quantization search for the Segment Anything models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines ``register(app)``; add a module here to add its commands.
COMMAND_MODULES = [
    "searchsvc.cli.models",
    "searchsvc.cli.service",
    "searchsvc.cli.profile",
    "searchsvc.cli.solve",
    "searchsvc.cli.quantize",
    "searchsvc.cli.gate",
    "searchsvc.cli.refine",
    "searchsvc.cli.video",
    "searchsvc.cli.export",
    "searchsvc.cli.latency",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="bitbudget")


if __name__ == "__main__":  # pragma: no cover
    main()
