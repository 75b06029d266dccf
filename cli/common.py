"""What every command shares: one-line errors with exit code 1 instead of tracebacks."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import unicodedata
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import ArgumentInfo, ParameterInfo

from sentflow.errors import FlagOf, Interrupted, SentflowError, first_line

F = TypeVar("F", bound=Callable)
DEBUG_ENV = "SENTFLOW_DEBUG"


def _untyped_flags(params: list[Any]) -> list[Any]:
    """The parameters, with the help's type column left empty for on/off flags (Typer writes `<bool>` there, but
    a flag takes no value)."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


class _WholeSummary:
    """A command's summary in lists of commands is its help's first paragraph, whole (click cuts it at 45
    characters, mid-sentence, e.g. in the CLI reference's list of commands)."""

    short_help: str | None
    help: str | None

    def get_short_help_str(self, limit: int = 45) -> str:
        text = inspect.cleandoc(self.short_help or self.help or "")
        return " ".join(text.split("\n\n")[0].split())


class Command(_WholeSummary, TyperCommand):
    """A sentflow command: flags shown without a type."""

    def get_params(self, ctx: Any) -> Any:
        return _untyped_flags(super().get_params(ctx))


class Group(_WholeSummary, TyperGroup):
    """A sentflow command group: flags shown without a type."""

    def get_params(self, ctx: Any) -> Any:
        return _untyped_flags(super().get_params(ctx))


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Show a warning as one `warning: ...` line on stderr (no source location)."""
    typer.echo(f"warning: {printable(str(message))}", err=True)


@contextmanager
def threads_from(threads: int | None) -> Iterator[None]:
    """Make `--threads` the thread count of everything the command runs ($SENTFLOW_THREADS), then restore."""
    from sentflow.runtime import THREADS_ENV, blas_threads, resolve_threads

    old = os.environ.get(THREADS_ENV)
    if threads is not None:
        os.environ[THREADS_ENV] = str(resolve_threads(threads))
    try:
        with blas_threads():
            yield
    finally:
        if old is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = old


def typed(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option `name` (on the command line or in the environment) rather than its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def status(message: str) -> None:
    """Say on stderr what a long, otherwise silent step is doing, for a person at a terminal (scripts and the
    one-line refusals keep their stderr as it was)."""
    if sys.stderr.isatty():
        typer.echo(f"{printable(message)} ...", err=True)


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr and return the Exit(1) to raise."""
    typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(code=1)


def printable(message: str) -> str:
    """`message` with control characters escaped, so text from a file cannot move the cursor, add lines or
    reorder what follows (bidirectional overrides)."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" or c in _BIDI else c for c in message)


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def flag_namer(func: Callable) -> FlagOf:
    """Parameter name -> the flag (or ARGUMENT) that sets it, read from command `func`'s own signature; names the
    command has no parameter for map to None (they keep their Python names)."""

    def flag_of(name: str) -> str | None:
        try:
            parameter = inspect.signature(func, eval_str=True).parameters.get(name)
        except (NameError, TypeError):
            return None
        if parameter is None:
            return None
        found = [*getattr(parameter.annotation, "__metadata__", ()), parameter.default]
        info = next((m for m in found if isinstance(m, ParameterInfo)), None)
        if isinstance(info, ArgumentInfo):
            return name.upper()
        # an Annotated option's first flag is stored as its `default` (Typer reads it as a declaration there)
        given = (info.default, *(info.param_decls or ())) if info is not None else ()
        decls = [d for d in given if isinstance(d, str) and d.startswith("--")]
        return decls[0] if decls else "--" + name.replace("_", "-")

    return flag_of


def user_errors(func: F) -> F:
    """Turn SentflowError and file-system errors into a one-line message and exit code 1; the parameters a message
    names are shown as the command's flags."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _one_line_warning
                return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except SentflowError as exc:
            raise fail(exc.render(flag_namer(func))) from None
        except BrokenPipeError:
            raise  # not the user's mistake: the reader of our output has gone (`main` ends quietly)
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            raise fail(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt as exc:
            text = exc.render(flag_namer(func)) if isinstance(exc, Interrupted) else str(exc)
            typer.echo(f"interrupted: {printable(text)}" if text else "interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            raise fail("out of memory: use a smaller input or smaller options") from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            if isinstance(exc, RuntimeError) and "allocate" in str(exc):  # torch's allocator, CPU or CUDA
                raise fail("out of memory: use a smaller input or smaller options") from None
            raise fail(
                f"internal error ({type(exc).__name__}: {first_line(exc)}); this is a bug, please report it with "
                f"the command; --debug shows the traceback"
            ) from None

    return wrapper  # type: ignore[return-value]
