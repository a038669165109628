"""TensorRTBackend against the fake TensorRT + fake CUDA: real numbers (the fake engine runs the stored
ONNX with ONNX Runtime, reading from / writing to the fake device buffers), real buffer/shape handling,
and the refusals (version/GPU mismatch, corrupt engine, out-of-profile shapes)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from fake_tensorrt.cuda import FakeGpu
from fake_tensorrt.install import install_trt
from fake_tensorrt.names import VERSIONS

from edgeseg.artifacts import sidecar_path
from edgeseg.errors import EdgesegError
from edgeseg.export.tensorrt_build import build_engine
from edgeseg.export.tensorrt_plan import EngineOptions
from edgeseg.runtime.backends import load_backend
from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgeseg.runtime.backends.tensorrt import TensorRTBackend
from edgeseg.runtime.segmenter import Segmenter


def _build(tmp_path, onnx, options=None):
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(onnx, engine, options or EngineOptions())
    return engine


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_engine_output_matches_onnxruntime(monkeypatch, tmp_path, tiny_onnx, version, binding):
    install_trt(monkeypatch, version, binding=binding)
    onnx = tiny_onnx(num_classes=4, size=(16, 24))
    engine = _build(tmp_path, onnx)
    batch = np.random.default_rng(1).normal(size=(1, 3, 16, 24)).astype(np.float32)
    with TensorRTBackend(engine) as trt_backend, OnnxRuntimeBackend(onnx) as ort_backend:
        got = trt_backend.run(batch)
        want = ort_backend.run(batch)
        assert got.shape == want.shape == (1, 4, 16, 24)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        d = trt_backend.describe()
        assert d["backend"] == "tensorrt" and d["tensorrt"] == version and d["cuda_binding"] == binding


def test_pipelined_results_in_order_and_buffers_freed(monkeypatch, tmp_path, tiny_onnx):
    trt = install_trt(monkeypatch, "10.3.0")
    onnx = tiny_onnx(num_classes=3, size=(8, 8))
    engine = _build(tmp_path, onnx)
    rng = np.random.default_rng(2)
    batches = [rng.normal(size=(1, 3, 8, 8)).astype(np.float32) for _ in range(5)]
    ref = OnnxRuntimeBackend(onnx)
    backend = TensorRTBackend(engine)
    live_before_close = trt.gpu.live()
    assert live_before_close == 8  # 2 slots x (pinned in/out + device in/out)
    outs = list(backend.run_pipelined(batches))
    assert len(outs) == 5
    for out, batch in zip(outs, batches):
        np.testing.assert_allclose(out, ref.run(batch), rtol=1e-5, atol=1e-5)
    # two in flight at once, and a third submit must wait for result()
    a, b = backend.submit(batches[0]), backend.submit(batches[1])
    assert a != b
    with pytest.raises(EdgesegError, match="already in flight"):
        backend.submit(batches[2])
    np.testing.assert_allclose(backend.result(), ref.run(batches[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(backend.result(), ref.run(batches[1]), rtol=1e-5, atol=1e-5)
    with pytest.raises(EdgesegError, match="nothing submitted"):
        backend.result()
    backend.close()
    assert trt.gpu.live() == 0


def test_dynamic_engine_rebinds_shapes_within_profile(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "11.4.0.106")
    onnx = tiny_onnx(num_classes=2, size=(16, 16), dynamic=True)
    opts = EngineOptions(min_shape=(1, 3, 8, 8), opt_shape=(1, 3, 16, 16), max_shape=(2, 3, 32, 32))
    engine = _build(tmp_path, onnx, opts)
    ref = OnnxRuntimeBackend(onnx)
    with TensorRTBackend(engine) as backend:
        assert backend.profile == ((1, 3, 8, 8), (1, 3, 16, 16), (2, 3, 32, 32))
        for shape in [(1, 3, 16, 16), (2, 3, 8, 32), (1, 3, 32, 32), (1, 3, 16, 16)]:
            batch = np.random.default_rng(3).normal(size=shape).astype(np.float32)
            out = backend.run(batch)
            assert out.shape == (shape[0], 2, shape[2], shape[3])
            np.testing.assert_allclose(out, ref.run(batch), rtol=1e-5, atol=1e-5)
        with pytest.raises(EdgesegError, match=r"accepts input shapes \[1, 3, 8, 8\]..\[2, 3, 32, 32\]"):
            backend.run(np.zeros((1, 3, 64, 64), np.float32))
        with pytest.raises(EdgesegError, match="N x 3 x H x W"):
            backend.run(np.zeros((3, 8, 8), np.float32))


def test_segmenter_runs_an_engine_via_load_backend(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "8.6.1")
    onnx = tiny_onnx(num_classes=3, size=(16, 24))
    engine = _build(tmp_path, onnx)
    frame = (np.random.default_rng(4).random((40, 60, 3)) * 255).astype(np.uint8)
    with Segmenter(engine) as seg, Segmenter(onnx) as ref:
        assert seg.classes == ref.classes
        np.testing.assert_array_equal(seg.infer(frame), ref.infer(frame))
    assert isinstance(load_backend(engine), TensorRTBackend)


def test_refuses_engine_from_another_tensorrt_version(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "8.6.1")
    engine = _build(tmp_path, tiny_onnx())
    install_trt(monkeypatch, "10.3.0")
    with pytest.raises(
        EdgesegError, match=r"built for TensorRT 8\.6\.1 \(this machine has 10\.3\.0\).*rebuild"
    ) as err:
        TensorRTBackend(engine)
    assert "\n" not in str(err.value)
    # without the sidecar check, the real runtime itself refuses: deserialization returns None
    with pytest.raises(EdgesegError, match="cannot load TensorRT engine.*kSERIALIZATION_VERSION"):
        TensorRTBackend(engine, check_compat=False)


def test_refuses_engine_from_another_gpu(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "10.3.0", FakeGpu(name="Orin (fake)", cc=(8, 7)))
    engine = _build(tmp_path, tiny_onnx())
    install_trt(monkeypatch, "10.3.0", FakeGpu(name="Xavier (fake)", cc=(7, 2)))
    with pytest.raises(EdgesegError, match=r"GPU Orin \(fake\) sm 8\.7 \(this is Xavier \(fake\) sm 7\.2\)"):
        TensorRTBackend(engine)


def test_version_compatible_engine_skips_the_version_check(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "10.3.0")
    engine = _build(tmp_path, tiny_onnx(), EngineOptions(version_compatible=True))
    info = json.loads(sidecar_path(engine).read_text())
    assert info["version_compatible"] is True and "VERSION_COMPATIBLE" in info["builder_flags"]
    info["tensorrt_version"] = "10.1.0"
    sidecar_path(engine).write_text(json.dumps(info))
    with TensorRTBackend(engine) as backend:
        assert backend.run(np.zeros((1, 3, 32, 48), np.float32)).shape == (1, 3, 32, 48)


def test_corrupt_engine_and_missing_sidecar_are_one_line_errors(monkeypatch, tmp_path, tiny_onnx):
    trt = install_trt(monkeypatch, "10.3.0")
    engine = _build(tmp_path, tiny_onnx())
    engine.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(EdgesegError, match="cannot load TensorRT engine.*magicTagRead") as err:
        TensorRTBackend(engine)
    assert "\n" not in str(err.value)
    assert trt.gpu.live() == 0  # nothing leaked on the failure path
    sidecar_path(engine).unlink()
    with pytest.raises(EdgesegError, match="no sidecar tiny.fp32.engine.json"):
        TensorRTBackend(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EdgesegError, match="not valid JSON"):
        TensorRTBackend(engine)


def test_no_gpu_and_no_tensorrt_are_clean_errors(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "10.3.0")
    engine = _build(tmp_path, tiny_onnx())
    install_trt(monkeypatch, "10.3.0", FakeGpu(devices=0))
    with pytest.raises(EdgesegError, match="no usable CUDA GPU"):
        TensorRTBackend(engine)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EdgesegError, match=r"pip install 'edgeseg\[tensorrt\]'"):
        TensorRTBackend(engine)


def test_backend_module_does_not_import_torch():
    code = (
        "import sys, edgeseg.runtime.backends.tensorrt, edgeseg.runtime.cuda_mem; "
        "assert 'torch' not in sys.modules, 'torch imported'; assert 'tensorrt' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
