"""An idle pipeline is idle: fed at camera pace, a run's CPU time is spent on its frames, not on
ONNX Runtime's pool threads spinning while they wait for the next one (issue 17: 1.53 of 2 cores
busy for 10 FPS). CPU time, unlike wall time, barely moves when other jobs share the machine."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_run_cli import run_cli

from edgeseg.errors import EdgesegError
from edgeseg.runtime import Segmenter, stream
from edgeseg.runtime.launch import plan_inference

FPS = 15.0
FRAMES = 30
HW = (128, 256)


@pytest.fixture
def conv_model(tiny_onnx):
    """Two convolutions at 128x256 (see `tiny_onnx(hidden=...)`): ONNX Runtime uses its pool."""
    return tiny_onnx(num_classes=4, size=HW, name="conv", hidden=16)


@pytest.fixture
def paced_run(tmp_path, conv_model):
    model = conv_model
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, HW[::-1])
    for i in range(FRAMES):
        writer.write(np.full((*HW, 3), i * 8, np.uint8))
    writer.release()
    return model, video


def test_realtime_run_spends_its_cpu_on_frames_not_on_spinning(paced_run):
    """`--realtime` at 15 FPS with a 2-thread session and ~1 ms inferences: the process's CPU time
    is a small fraction of the wall time. With ONNX Runtime's threads spinning it was about half a
    core on this 2-core machine, whatever the model's size."""
    model, video = paced_run
    r = run_cli(
        "--model",
        str(model),
        "--video",
        str(video),
        "--realtime",
        "--workers",
        "1",
        "--threads",
        "2",
        "--json",
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["frames"]["processed"] >= FRAMES // 2
    cpu = report["cpu"]
    assert cpu["cores_busy"] < 0.15, cpu
    assert cpu["process_ms_per_frame"] < 0.15 * 1000.0 / FPS, cpu  # of the frame interval


def test_pacing_turns_spinning_off_for_onnx_runtime_only(conv_model):
    assert plan_inference(conv_model, live=True).loader.options.spin_wait is False
    assert plan_inference(conv_model, live=False).loader.options.spin_wait is True
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend
    from edgeseg.runtime.backends.torch import TorchBackend

    # only ONNX Runtime has a spinning pool: the other backends are never handed the option
    assert "spin_wait" not in TensorRTBackend.OPTIONS and "spin_wait" not in TorchBackend.OPTIONS


def test_stream_with_a_live_source_builds_a_non_spinning_backend(tmp_path, monkeypatch, conv_model):
    """The one-call API: `stream("m.onnx", camera=...)` passes the pacing to the backend it builds."""
    import edgeseg.runtime.launch as launch

    made: list[bool] = []

    class Recording(Segmenter):
        def __init__(self, loader):
            made.append(loader.options.spin_wait)
            super().__init__(loader)

    monkeypatch.setattr(launch, "Segmenter", Recording)
    model = conv_model
    with pytest.raises(EdgesegError, match="camera 57"):
        next(stream(str(model), camera=57))  # no camera here: the backend is built before opening it
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((*HW, 3), np.uint8))
    assert len(list(stream(str(model), images=str(tmp_path / "a.png")))) == 1
    assert made == [False, True]  # a camera paces the backend, a file does not
