"""Stop signals: Ctrl-C (SIGINT) and SIGTERM (what systemd and `docker stop` send) stop work the same
way, and once stopping has begun, a second signal cannot cut the finalisation of outputs short.

SIGTERM raises `Terminated`, a KeyboardInterrupt, so every `except KeyboardInterrupt` that finalises
outputs handles both; the CLI then exits 143 instead of 130 (`ExitCode`), which is how a supervisor
tells "stopped by me" from "interrupted by a person".
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from edgeseg.errors import ExitCode


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop and finalise as for Ctrl-C, then exit 143."""


def signal_name(exc: BaseException) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


def exit_code_for(name: str | None) -> int:
    """The exit status of a run stopped by signal `name` (None: not stopped by a signal)."""
    return {"SIGINT": ExitCode.INTERRUPTED, "SIGTERM": ExitCode.TERMINATED}.get(name or "", ExitCode.OK)


_STOP_REQUESTED: list[str] = []  # the stop signals received, while one is being acted on


def stop_requested() -> str | None:
    """The stop signal (SIGINT/SIGTERM) this process is acting on, if any: writers waiting on a reader
    (a FIFO, a pipe) stop waiting for it (`edgeseg.patient_io`)."""
    return _STOP_REQUESTED[0] if _STOP_REQUESTED else None


def _raise_terminated(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
    _STOP_REQUESTED.append("SIGTERM")
    raise Terminated


def install_sigterm() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (a no-op elsewhere, e.g. embedded use)."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, _raise_terminated)


class StopOnce:
    """`with StopOnce() as stop:` the first SIGINT/SIGTERM raises (KeyboardInterrupt / Terminated) and
    stops the work; every later one, and any after `stop.finalising()`, is only noted in
    `stop.received`, so closing videos and writing the report run to the end. The previous handlers
    come back on exit. Outside the main thread it changes nothing (Python delivers signals there only).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: list[str] = []
        self._raising = True
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnce:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        for name in self.received:  # the work stopped and its outputs are final: writers wait again
            with contextlib.suppress(ValueError):
                _STOP_REQUESTED.remove(name)

    def finalising(self) -> None:
        """From now on signals are only noted: the work is over, its outputs are being finished."""
        self._raising = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        name = signal.Signals(signum).name
        self.received.append(name)
        _STOP_REQUESTED.append(name)
        if self._raising:
            self._raising = False
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        # a plain write: the main thread may be inside a console print right now; and only when
        # stderr has room, as a handler blocked on a stopped pipe would hold the finalisation up
        with contextlib.suppress(OSError, ValueError):
            room = select.poll()
            room.register(2, select.POLLOUT)
            if room.poll(0):
                os.write(2, f"{name}: finishing outputs and the report first\n".encode())


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a few renames that must happen together (a dataset folder's
    swap): a signal arriving meanwhile is delivered, and acted on, right after the block."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
