"""How every command reports a user error: one red line on stderr, exit status 1, no traceback."""

from __future__ import annotations

from typing import NoReturn

import typer

USER_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError)
"""What a command reports with :func:`fail`: every :class:`~clearsep_data.errors.ClearSepError` (and the model
folder's ``ClearSepLoadError``) is a ``ValueError``; ``OSError`` covers files that cannot be read or written."""


def report(message: object) -> None:
    """Print ``error: message`` on stderr, one line.

    The message is escaped, so text such as ``corpus [train]`` or a MID in brackets is printed as it is
    rather than read as rich markup; it is not wrapped, so a long path stays on one line.
    """
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[red]error:[/red] {escape(str(message))}", highlight=False, soft_wrap=True)


def fail(message: object) -> NoReturn:
    """:func:`report` the message and exit with status 1."""
    report(message)
    raise typer.Exit(code=1) from None
