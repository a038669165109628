"""Writing to what another process reads (a FIFO, a pipe, a device, standard output): a reader may
hold the writer back, as a pipe should, but never past a stop signal, so SIGTERM and Ctrl-C end a run
within seconds whatever reads its outputs.
"""

from __future__ import annotations

import errno
import io
import os
import select
import stat
import sys
import time
from pathlib import Path
from typing import Any

from edgeseg.errors import OutputFailed, output_failed
from edgeseg.signals import exit_code_for, stop_requested

_HELD_FIFOS: dict[str, int] = {}  # FIFOs checked for a reader, still open for writing (`hold_fifo`)


class ReaderStopped(OSError):
    """A FIFO's or pipe's reader took nothing for STALL_GRACE_S after a stop signal arrived."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(errno.EPIPE, f"its reader stopped reading, and {why} asked to stop", name)
        self.exit_code = exit_code_for(why)


STALL_GRACE_S = 2.0  # after a stop signal, how long a write waits for a reader that takes nothing
_POLL_MS = 100


class PatientWriter(io.RawIOBase):
    """Writes to a FIFO, pipe, device or inherited descriptor. A reader that stops reading holds the
    writer back, as a pipe should, but never past a stop signal: from then on a write that the reader
    takes nothing of for STALL_GRACE_S fails with `ReaderStopped`. So SIGTERM and Ctrl-C end a run
    within seconds whatever reads its outputs, and no thread is left blocked in a write (holding its
    file's lock) when the process exits. Each write waits for room (poll) and then writes at most
    PIPE_BUF bytes, which a pipe with room takes without blocking (pipe(7)). `drop_when_stalled`
    (standard output and error): once given up, writes are dropped instead of failing, since the
    process is ending on that signal anyway and has nowhere else to say so."""

    def __init__(self, fd: int, name: str, *, drop_when_stalled: bool = False) -> None:
        super().__init__()
        self._fd = fd
        self.name = name
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        self._stalled = False
        self._drop = drop_when_stalled

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        since = None
        while not self._stalled and not self._poll.poll(_POLL_MS):
            why = stop_requested()
            if why is None:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since >= STALL_GRACE_S:
                self._stalled = True
        if not self._stalled:
            return os.write(self._fd, memoryview(data)[: select.PIPE_BUF])
        if self._drop:
            return memoryview(data).nbytes
        raise ReaderStopped(self.name, stop_requested() or "a signal")

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


def patient_std_streams() -> None:
    """Make standard output and error on a pipe, FIFO or socket patient writers (`PatientWriter`):
    a final report printed to `edgeseg run --json | reader` whose reader stopped reading cannot hold
    SIGTERM or Ctrl-C up (Python retries an interrupted write forever, PEP 475). For the CLI's entry
    point: it replaces `sys.stdout`/`sys.stderr`, which rich's consoles look up at every print."""
    for name, what in (("stdout", "standard output"), ("stderr", "standard error")):
        stream = getattr(sys, name)
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            continue
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            continue  # a file, a terminal or /dev/null never stops taking what is written
        stream.flush()
        raw = PatientWriter(os.dup(fd), what, drop_when_stalled=True)
        patient = io.TextIOWrapper(
            io.BufferedWriter(raw),
            encoding=stream.encoding,
            errors=stream.errors,
            line_buffering=stream.line_buffering,
        )
        setattr(sys, name, patient)


def open_for_appending(real: Path, target: Path) -> int:
    """A descriptor appending to the FIFO or device `real`. A FIFO's reader is waited for, as a
    blocking open would (fifo(7)), but only until a stop signal arrives."""
    try:
        fifo = stat.S_ISFIFO(os.stat(real).st_mode)
    except OSError as exc:
        raise output_failed(target, exc) from None
    while True:
        try:
            fd = os.open(real, os.O_WRONLY | os.O_APPEND | (os.O_NONBLOCK if fifo else 0))
            break
        except OSError as exc:
            why = stop_requested()
            if exc.errno != errno.ENXIO:
                raise output_failed(target, exc) from None
            if why is not None:
                raise OutputFailed(
                    f"cannot write {target}: it is a FIFO that nobody reads, and {why} asked to stop",
                    exit_code=exit_code_for(why),
                ) from None
            time.sleep(_POLL_MS / 1000)
    if fifo:
        os.set_blocking(fd, True)
    return fd


def hold_fifo(path: Path, fd: int) -> None:
    """Keep `fd`, a FIFO opened for writing when its reader was checked (`check_writable`), for the
    write to come: closing it would hand the reader an end of file."""
    earlier = _HELD_FIFOS.pop(str(path), None)
    if earlier is not None:
        os.close(earlier)
    _HELD_FIFOS[str(path)] = fd


def take_held_fifo(path: Path) -> int | None:
    """The descriptor `hold_fifo` kept for `path`, now the caller's to write and close."""
    return _HELD_FIFOS.pop(str(path), None)
