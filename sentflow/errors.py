"""The exception types for mistakes a user can fix (bad files, shapes, options), and how their messages are cut.

Kept free of heavy imports: the command line imports it before knowing which command runs. `NotFittedError`
(also scikit-learn's) lives beside the calibrators, in `sentflow.calibration.base`.
"""

from __future__ import annotations


class SentflowError(ValueError):
    """A user-facing error: the message is one line that names the problem and what to do."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during resumable work: the message says what is kept and how to continue."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
