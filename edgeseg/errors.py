"""One exception type for every user-facing failure, and the one table of exit codes.

Library code raises `EdgesegError` with a one-line, actionable message; the CLI prints it without a
traceback and exits with the error's code. Anything else escaping is a bug and keeps its traceback
(Python exits 1). Each code means one thing, so a robot's supervisor or a script can act on it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `edgeseg`'s exit status means (also listed by `edgeseg --help`)."""

    OK = 0
    BUG = 1  # edgeseg failed on valid input: an unexpected error (traceback) or its own check (one line)
    BAD_INPUT = 2  # bad input, option, file or environment; the message says what
    GATE_FAILED = 3  # an INT8 artifact lost more accuracy than --max-miou-drop allows
    NEEDS_DEVICE = 4  # nothing failed: the TensorRT engine build is pending on the target device
    SOURCE_LOST = 5  # a live source was lost for good (no --reconnect, or its timeout ran out)
    OUTPUT_FAILED = 6  # writing an output failed (disk full, unwritable path); what could be saved was
    INTERRUPTED = 130  # Ctrl-C (SIGINT); outputs were finalised
    TERMINATED = 143  # SIGTERM (systemd, docker stop); outputs were finalised


EXIT_CODE_HELP = {
    ExitCode.OK: "success",
    ExitCode.BUG: "edgeseg failed on valid input (a bug: please report it)",
    ExitCode.BAD_INPUT: "bad input, option, file or environment",
    ExitCode.GATE_FAILED: "INT8 accuracy gate failed",
    ExitCode.NEEDS_DEVICE: "TensorRT engine build pending on the device (hand-off printed)",
    ExitCode.SOURCE_LOST: "live source lost for good",
    ExitCode.OUTPUT_FAILED: "writing an output failed (disk full, unwritable path)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C), outputs finalised",
    ExitCode.TERMINATED: "terminated (SIGTERM), outputs finalised",
}


class EdgesegError(Exception):
    """A failure caused by input, environment or configuration, explained in one line."""

    exit_code: int = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def not_a_file(path: object, what: str) -> EdgesegError:
    """The one line for an input file that is not a regular file: missing, a folder, or a device or
    FIFO (reading /dev/zero never ends; a FIFO nobody writes blocks for ever)."""
    from pathlib import Path

    p = Path(str(path))
    if p.is_dir():
        return EdgesegError(f"{what} {path} is a folder, not a file")
    if p.exists():
        return EdgesegError(f"{what} {path} is not a regular file (a device or FIFO)")
    return EdgesegError(f"{what} not found: {path}")


class InternalError(EdgesegError):
    """edgeseg's own step failed on input that passed every check (an ONNX the checker accepts): not
    the user's mistake, so not BAD_INPUT; one line that says so instead of a traceback."""

    exit_code = ExitCode.BUG

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} (edgeseg failed on a valid input: please report it, with the file)")


class MissingDependencyError(EdgesegError):
    """An optional dependency is not installed; the message names the extra to install."""


class SourceLost(EdgesegError):
    """A live source stopped delivering for good (no --reconnect, or its timeout ran out)."""

    exit_code = ExitCode.SOURCE_LOST


class OutputFailed(EdgesegError):
    """An output could not be written (disk full, unwritable path); what could be saved was saved."""

    exit_code = ExitCode.OUTPUT_FAILED


def output_failed(target: object, exc: OSError) -> OutputFailed:
    """One line for a failed write: which file, and the system's reason (e.g. no space left). A write
    given up on because a stop signal came (`ReaderStopped`) exits with that signal's code."""
    return OutputFailed(
        f"cannot write {target}: {exc.strerror or exc}", exit_code=getattr(exc, "exit_code", None)
    )


def first_line(exc: BaseException | str) -> str:
    """An exception's message (or a library's log message) cut to its first line, for a one-line
    error: libraries raise multi-line texts and C++ assertions. An exception with no message gives its
    type's name, an empty text ""."""
    text = str(exc).strip()
    if not text:
        return "" if isinstance(exc, str) else type(exc).__name__
    return text.splitlines()[0]


def exit_code_of(exc: BaseException | None) -> int:
    """The exit status a failure stands for: its own code, or BUG for anything unexpected."""
    if exc is None:
        return ExitCode.OK
    return int(getattr(exc, "exit_code", ExitCode.BUG)) if isinstance(exc, EdgesegError) else ExitCode.BUG
