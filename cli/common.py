"""What every command shares: one-line errors with exit code 1 instead of tracebacks."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import TypeVar

import typer

from sentflow.errors import SentflowError

F = TypeVar("F", bound=Callable)

warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit(1) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def user_errors(func: F) -> F:
    """Turn SentflowError and file-system errors into a one-line message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SentflowError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
