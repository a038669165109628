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
from edgeseg.runtime.backends import BackendOptions, load_backend
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
    backend.submit(batches[0])
    backend.submit(batches[1])
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
        with pytest.raises(
            EdgesegError, match=r"takes frames from 8x8 to 32x32 \(its optimization profile\), got 64x64"
        ):
            backend.run(np.zeros((1, 3, 64, 64), np.float32))
        with pytest.raises(EdgesegError, match=r"takes batches of 1 to 2 frames .*, got 3; .*--max-batch 3"):
            backend.run(np.zeros((3, 3, 16, 16), np.float32))
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
    with pytest.raises(
        EdgesegError, match=r"GPU Orin \(fake\) sm 8\.7 with 16 SMs \(this is Xavier \(fake\) sm 7\.2"
    ):
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
    (tmp_path / "tiny.onnx").unlink()  # nothing left to tell which model it is
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


# ------------------------------------------------------------------------------ issue 14: first contact
def _batch(shape=(1, 3, 32, 48), seed=5):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_version_compatible_engine_loads_only_with_host_code_allowed(monkeypatch, tmp_path, tiny_onnx):
    """The backend must opt into host code as Polygraphy and trtexec do, or TensorRT refuses the engine."""
    trt = install_trt(monkeypatch, "10.3.0")
    onnx = tiny_onnx()
    engine = _build(tmp_path, onnx, EngineOptions(version_compatible=True))
    with TensorRTBackend(engine) as backend, OnnxRuntimeBackend(onnx) as ref:
        np.testing.assert_allclose(backend.run(_batch()), ref.run(_batch()), rtol=1e-5, atol=1e-5)
    runtime = trt.Runtime(trt.ILogger())  # the fake refuses it like TensorRT when host code is not allowed
    assert runtime.deserialize_cuda_engine(engine.read_bytes()) is None


def test_engine_runs_on_the_dla_core_it_was_built_for(monkeypatch, tmp_path, tiny_onnx):
    from edgeseg.export.fp16 import write_fp16

    trt = install_trt(monkeypatch, "10.3.0", FakeGpu(dla_cores=2))
    fp16 = write_fp16(tiny_onnx(), tmp_path / "tiny.fp16.onnx")[0]
    engine = tmp_path / "tiny.fp16-dla1.engine"
    build_engine(fp16, engine, EngineOptions(precision="fp16", dla_core=1))
    with TensorRTBackend(engine) as backend:
        assert backend.run(_batch()).shape == (1, 3, 32, 48)
        assert backend.describe()["dla_core"] == 1
    assert [d for w, d in trt.calls if w == "deserialize_cuda_engine"][-1] == {"dla_core": 1}


def test_pycuda_segmenter_works_from_any_thread_on_the_primary_context(monkeypatch, tmp_path, tiny_onnx):
    """A ROS callback thread calls Segmenter.infer without knowing about CUDA contexts; no private
    context is made (each would be time-sliced and hold its own memory on a Jetson)."""
    import threading

    trt = install_trt(monkeypatch, "10.3.0", binding="pycuda")
    drv = sys.modules["pycuda.driver"]
    onnx = tiny_onnx(size=(16, 24))
    engine = _build(tmp_path, onnx)
    frame = (np.random.default_rng(4).random((40, 60, 3)) * 255).astype(np.uint8)
    seg, ref = Segmenter(engine), Segmenter(onnx)
    assert drv.Context.get_current() is None  # nothing left pushed on the thread that opened it
    got, errors, left = [], [], []

    def ros_callback() -> None:
        try:
            got.append(seg.infer(frame))
            left.append(drv.Context.get_current())
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    for _ in range(2):
        t = threading.Thread(target=ros_callback)
        t.start()
        t.join()
    assert errors == [] and left == [None, None]
    np.testing.assert_array_equal(got[0], ref.infer(frame))
    seg.close()
    assert trt.gpu.contexts_created == 0  # only the device's primary context, retained and released
    assert trt.gpu.primary_retains == 0 and trt.gpu.live() == 0


def test_workers_share_one_engine_each_with_its_own_context_and_stream(monkeypatch, tmp_path, tiny_onnx):
    import threading

    trt = install_trt(monkeypatch, "10.3.0")
    onnx = tiny_onnx()
    engine = _build(tmp_path, onnx)
    first = TensorRTBackend(engine)
    trt.calls.clear()
    second = first.spawn()
    made = [w for w, _ in trt.calls]
    assert made.count("deserialize_cuda_engine") == 0 and made.count("create_execution_context") == 1
    assert second.engine is first.engine and second.context is not first.context
    assert second.stream is not first.stream
    ref = OnnxRuntimeBackend(onnx)
    outs: dict[int, list] = {0: [], 1: []}

    def work(k: int, backend: TensorRTBackend) -> None:
        backend.activate()
        try:
            outs[k] = [backend.run(_batch(seed=k * 10 + i)) for i in range(3)]
        finally:
            backend.deactivate()

    threads = [threading.Thread(target=work, args=(k, b)) for k, b in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        for i, out in enumerate(outs[k]):
            np.testing.assert_allclose(out, ref.run(_batch(seed=k * 10 + i)), rtol=1e-5, atol=1e-5)
    first.close()  # the other worker keeps the shared engine
    assert second.run(_batch()).shape == (1, 3, 32, 48)
    second.close()
    assert trt.gpu.live() == 0


def test_pipeline_with_two_workers_deserializes_the_engine_once(monkeypatch, tmp_path, tiny_onnx):
    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.runtime.launch import open_pipeline
    from edgeseg.runtime.sources import open_source

    trt = install_trt(monkeypatch, "10.3.0")
    engine = _build(tmp_path, tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48)))
    trt.calls.clear()
    pipe = open_pipeline(engine, open_source(synthetic=6, synthetic_size=(32, 48)), workers=2)
    stats = pipe.run()
    assert stats.processed == 6
    made = [w for w, _ in trt.calls]
    assert made.count("deserialize_cuda_engine") == 1 and made.count("create_execution_context") == 2


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_waiting_for_results_does_not_spin_a_cpu_core(monkeypatch, tmp_path, tiny_onnx, binding):
    trt = install_trt(monkeypatch, "10.3.0", binding=binding)
    engine = _build(tmp_path, tiny_onnx())
    trt.gpu.spin_waits = 0
    with TensorRTBackend(engine) as backend:
        for seed in range(3):
            backend.run(_batch(seed=seed))
        list(backend.run_pipelined([_batch(seed=s) for s in range(4)]))
    assert trt.gpu.spin_waits == 0


def test_sidecar_records_the_module_and_refuses_another_one(monkeypatch, tmp_path, tiny_onnx):
    """Orin AGX and Orin NX are both sm 8.7; SM count and memory tell them apart."""
    agx = FakeGpu(name="Orin", cc=(8, 7), sm_count=16, total_memory=64 << 30, uuid=bytes(range(16)))
    install_trt(monkeypatch, "10.3.0", agx)
    engine = _build(tmp_path, tiny_onnx())
    gpu = json.loads(sidecar_path(engine).read_text())["gpu"]
    assert gpu["sm_count"] == 16 and gpu["total_memory"] == 64 << 30
    assert gpu["uuid"] == "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"
    nx = FakeGpu(name="Orin", cc=(8, 7), sm_count=8, total_memory=16 << 30, uuid=bytes(16))
    install_trt(monkeypatch, "10.3.0", nx)
    with pytest.raises(EdgesegError, match=r"16 SMs.*this is .*8 SMs.*--allow-other-gpu") as err:
        TensorRTBackend(engine)
    assert "\n" not in str(err.value)
    with load_backend(engine, BackendOptions(allow_other_gpu=True)) as backend:
        assert backend.run(_batch()).shape == (1, 3, 32, 48)
    other_board = FakeGpu(name="Orin", cc=(8, 7), sm_count=16, total_memory=64 << 30, uuid=bytes(16))
    install_trt(monkeypatch, "10.3.0", other_board)  # another AGX: same module, another UUID
    with TensorRTBackend(engine) as backend:
        assert backend.run(_batch()).shape == (1, 3, 32, 48)


def test_engine_without_sidecar_loads_with_a_warning_and_the_card_beside_it(
    monkeypatch, tmp_path, tiny_onnx, capsys
):
    """What `trtexec --saveEngine` leaves: an engine and nothing else."""
    from edgeseg.artifacts import read_card

    install_trt(monkeypatch, "10.3.0")
    onnx = tiny_onnx(name="tiny")
    engine = _build(tmp_path, onnx)  # tiny.fp32.engine beside tiny.onnx
    sidecar_path(engine).unlink()
    assert read_card(engine).classes == ["c0", "c1", "c2"]
    with TensorRTBackend(engine) as backend:
        assert backend.run(_batch()).shape == (1, 3, 32, 48)
    err = capsys.readouterr().err
    assert "no sidecar" in err and "tiny.onnx" in err and "not checked" in err


def test_close_releases_the_runtime_engine_and_context(monkeypatch, tmp_path, tiny_onnx):
    import gc
    import weakref

    install_trt(monkeypatch, "10.3.0")
    backend = TensorRTBackend(_build(tmp_path, tiny_onnx()))
    refs = [weakref.ref(backend.runtime), weakref.ref(backend.engine), weakref.ref(backend.context)]
    backend.close()
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_dynamic_hw_engine_runs_at_the_stated_size_within_its_default_profile(
    monkeypatch, tmp_path, tiny_onnx
):
    """An engine built with no shapes from a --dynamic-hw ONNX takes half..twice the card's stated size
    (fake TensorRT: the engine runs its ONNX on ONNX Runtime): odd frames run at the stated size; a
    --input-size inside the range runs there; one outside is refused when the Segmenter opens, and a
    --native-size frame beyond the range at that frame, each in one line naming the range."""
    from edgeseg.preprocess import NATIVE, at_inference_size

    install_trt(monkeypatch, "10.3.0")
    onnx = tiny_onnx(num_classes=3, size=(32, 48), dynamic=True)
    engine = _build(tmp_path, onnx)
    seg = Segmenter(engine)
    assert seg.backend.profile == ((1, 3, 16, 24), (4, 3, 32, 48), (4, 3, 64, 96))
    frame = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    shapes = []
    run = seg.backend.run
    monkeypatch.setattr(seg.backend, "run", lambda b: shapes.append(b.shape) or run(b))
    labels = seg.infer(frame)
    assert labels.shape == (37, 53) and shapes == [(1, 3, 32, 48)]
    np.testing.assert_array_equal(labels, Segmenter(onnx).infer(frame))  # ONNX Runtime, same size
    card = seg.card
    inside = Segmenter(engine, BackendOptions(card=at_inference_size(card, (48, 64))))
    assert inside.infer(frame).shape == (37, 53)
    with pytest.raises(
        EdgesegError, match=r"takes frames from 16x24 to 64x96 .*got 128x128; run with --input-size"
    ):
        Segmenter(engine, BackendOptions(card=at_inference_size(card, (128, 128))))
    native = Segmenter(engine, BackendOptions(card=at_inference_size(card, NATIVE)))
    assert native.infer(frame).shape == (37, 53)  # padded to 64x64: inside
    with pytest.raises(EdgesegError, match=r"takes frames from 16x24 to 64x96 .*got 96x96"):
        native.infer(np.zeros((70, 70, 3), np.uint8))
    for s in (seg, inside, native):
        s.close()
