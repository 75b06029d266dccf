"""The one exception type for mistakes a user can fix (bad files, shapes, options)."""


class SentflowError(ValueError):
    """A user-facing error: the message is one line that names the problem and what to do."""
