"""One exception type for every user-facing failure.

Library code raises `EdgesegError` with a one-line, actionable message; the CLI prints it without a
traceback and exits non-zero. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgesegError(Exception):
    """A failure caused by input, environment or configuration, explained in one line."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class MissingDependencyError(EdgesegError):
    """An optional dependency is not installed; the message names the extra to install."""
