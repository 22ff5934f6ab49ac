"""The one exception for a user's mistake: the `cpo` command prints its message and exits with status 2."""

from __future__ import annotations


class UsageError(ValueError):
    """A mistake in the user's input (a missing file, misaligned line counts, an unknown column, an empty input).

    The message names the file, row or field, and says how to fix it. ``cpo`` prints it without a traceback.
    """
