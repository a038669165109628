"""Shared fixtures. Tests keep models tiny and inputs small so the suite fits CI's 2 cores."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from onnx_models import tiny_model

os.environ.setdefault("OMP_NUM_THREADS", "1")

# A shell that starts the suite in the background (`make test &`, nohup) leaves SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler: the Ctrl-C tests would wait for an interrupt that
# never comes. The suite runs as if started from a terminal (children get SIG_DFL again at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Handlers a test may leave behind: the fake rclpy's SIGTERM handler when ROS is shut down from another
# thread (only the main thread may set handlers), the CLI's SIGTERM handler after an in-process run.
KEPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """The process's signal handlers as they were before, whatever ran inside."""
    before = {sig: signal.getsignal(sig) for sig in KEPT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            if signal.getsignal(sig) is not handler and handler is not None:
                signal.signal(sig, handler)


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """No test leaves a signal handler installed for the tests after it."""
    with kept_signal_handlers():
        yield


@pytest.fixture(autouse=True)
def _isolated_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own workspace, so nothing leaks into ./edgeseg-work."""
    wd = tmp_path / "work"
    monkeypatch.setenv("EDGESEG_WORKDIR", str(wd))
    return wd


@pytest.fixture
def tiny_onnx(tmp_path: Path):
    """Factory for a torch-free ONNX segmenter: a 1x1 conv (3 -> C) with an edgeseg card inside, at
    tmp_path/<name>.onnx (onnx_models.tiny_model says what each argument does)."""

    def make(num_classes: int = 3, size=(32, 48), name: str = "tiny", **kw) -> Path:
        return tiny_model(tmp_path / f"{name}.onnx", num_classes, size, name=name, **kw)

    return make
