"""Shared fixtures. Tests keep models tiny and inputs small so the suite fits CI's 2 cores."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

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
    """Factory for a torch-free ONNX segmenter: a 1x1 conv (3 -> C) with an edgeseg card inside."""

    def make(
        num_classes: int = 3,
        size=(32, 48),
        dynamic: bool = False,
        name: str = "tiny",
        hidden: int = 0,
        batch=None,
    ) -> Path:
        """`hidden` > 0: a 3x3 conv to that many channels and a ReLU first, enough work per operator
        for ONNX Runtime to split it over its intra-op threads (a lone 1x1 conv runs on one).
        `dynamic`: N, H and W named (as `edgeseg export --dynamic --dynamic-hw`); `batch`: the batch axis alone
        (an int fixes it, a name makes it dynamic); default 1, or "N" when dynamic."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        from edgeseg.card import ModelCard, default_palette

        rng = np.random.default_rng(0)
        w = rng.normal(size=(num_classes, hidden or 3, 1, 1)).astype(np.float32)
        b = np.zeros(num_classes, dtype=np.float32)
        h, wd = ("H", "W") if dynamic else size
        n = batch if batch is not None else ("N" if dynamic else 1)
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, h, wd])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, num_classes, h, wd])
        weights = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        nodes = [helper.make_node("Conv", ["relu" if hidden else "input", "w", "b"], ["logits"])]
        if hidden:
            w1 = rng.normal(size=(hidden, 3, 3, 3)).astype(np.float32)
            weights.append(numpy_helper.from_array(w1, "w1"))
            nodes[:0] = [
                helper.make_node("Conv", ["input", "w1"], ["hidden"], pads=[1, 1, 1, 1]),
                helper.make_node("Relu", ["hidden"], ["relu"]),
            ]
        graph = helper.make_graph(nodes, "tiny", [x], [y], weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        card = ModelCard(
            model=name,
            classes=[f"c{i}" for i in range(num_classes)],
            palette=default_palette(num_classes),
            input_size=size,
            dynamic=dynamic,
            dynamic_batch=isinstance(n, str),
        )
        for k, v in card.to_metadata_props().items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path)
        return path

    return make
