"""The exception types for mistakes a user can fix (bad files, shapes, options), and how their messages are cut.

A `SentflowError` carries the parameter it is about (`param`) and names parameters as `Param` parts, so that each
front end shows them in its own words: the library as Python parameters (`select_on='test'`), the command line
as the flags of the command that ran (`--select-on test`), never by editing the text.

Kept free of heavy imports: the command line imports it before knowing which command runs. `NotFittedError`
(also scikit-learn's) lives beside the calibrators, in `sentflow.calibration.base`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FlagOf = Callable[[str], "str | None"]  # a parameter name -> the flag a front end shows for it (None: no flag)


@dataclass(frozen=True)
class Param:
    """A parameter named in a message, with the value it is about (`None`: the name alone).

    Attributes:
        name: The Python parameter name (`select_on`).
        value: The value given, or to give (`True` for an on/off switch), or None.
    """

    name: str
    value: object = None

    def render(self, flag_of: FlagOf | None = None) -> str:
        """`name=value` (Python), or the flag `flag_of` maps the name to, followed by the value unless a switch."""
        flag = flag_of(self.name) if flag_of is not None else None
        if flag is None:
            return self.name if self.value is None else f"{self.name}={self.value!r}"
        if self.value is None or self.value is True:
            return flag
        return f"{flag} {self.value}"


class SentflowError(ValueError):
    """A user-facing error: the message is one line that names the problem and what to do.

    Args:
        *parts: The message: text, and `Param`s where it names a parameter.
        param: The parameter the error is about (default: the first `Param` of the message, if any).
    """

    def __init__(self, *parts: str | Param, param: str | None = None) -> None:
        self.parts = parts
        self.param = param or next((p.name for p in parts if isinstance(p, Param)), None)
        super().__init__(self.render())

    def render(self, flag_of: FlagOf | None = None) -> str:
        """The message, its parameters named as `flag_of` names them (default: as Python parameters)."""
        return render_parts(self.parts, flag_of)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during resumable work: the message says what is kept and how to continue.

    Args:
        *parts: The message: text, and `Param`s where it names a parameter (`Param("resume", True)`).
    """

    def __init__(self, *parts: str | Param) -> None:
        self.parts = parts
        super().__init__(self.render())

    def render(self, flag_of: FlagOf | None = None) -> str:
        """The message, its parameters named as `flag_of` names them (default: as Python parameters)."""
        return render_parts(self.parts, flag_of)


def render_parts(parts: tuple[str | Param, ...], flag_of: FlagOf | None = None) -> str:
    """Message parts as one text, each `Param` named as `flag_of` names it (default: as a Python parameter)."""
    return "".join(part if isinstance(part, str) else part.render(flag_of) for part in parts)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
