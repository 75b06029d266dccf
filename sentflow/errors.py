"""The exception types for mistakes a user can fix (bad files, shapes, options)."""

from sklearn.exceptions import NotFittedError as SklearnNotFittedError


class SentflowError(ValueError):
    """A user-facing error: the message is one line that names the problem and what to do."""


class NotFittedError(SentflowError, SklearnNotFittedError):
    """A calibration used before `fit`: both a SentflowError and scikit-learn's NotFittedError."""
