"""Shared CLI plumbing: one error handler, JSON printing, the random-weights line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console

__all__ = [
    "console",
    "err_console",
    "fail",
    "user_errors",
    "print_json",
    "progress_bar",
    "random_weights_note",
    "resized_note",
    "read_json_plan",
]

# Piped output (CI logs, tests) gets a wide console so that names are never cut.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def user_errors(code: int = 2) -> Iterator[None]:
    """Turn the library's user-facing errors into one line and a non-zero exit."""
    from profiling.errors import BitbudgetError

    try:
        yield
    except BitbudgetError as exc:
        fail(str(exc), code)
    except ValueError as exc:  # validation errors of the solvers and specs
        fail(str(exc), code)


def progress_bar() -> Any:
    """A transient progress bar on stderr (description, bar, percent, elapsed, remaining)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=err_console, transient=True)


def print_json(doc: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def random_weights_note(random: bool) -> None:
    """The line every table computed from random weights carries."""
    if random:
        console.print(
            "[yellow]random_weights: true[/] — seeded random weights, not a checkpoint; "
            "figures show structure, not real accuracy."
        )


def resized_note(note: dict[str, Any] | None) -> None:
    """The line a model loaded from a checkpoint saved at another image size carries."""
    if note:
        names = ", ".join(note["tensors"])
        console.print(
            f"resized_from: checkpoint saved at {note['image_size'] or '?'} px, loaded at "
            f"{note['to_image_size']} px; interpolated {names}",
            highlight=False,
            soft_wrap=True,
        )


def read_json_plan(path: Any, label: str) -> Any:
    """The JSON document in ``path``; an unreadable file or bad JSON raises one ``BadInput``
    that starts with ``label`` (the caller checks the document's shape)."""
    from profiling.errors import BadInput

    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{label}: cannot read a JSON plan ({exc})") from None
