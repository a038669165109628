"""The OpenVINO backend, for real (OpenVINO installs from PyPI with `edgeseg[openvino]`, in `all`):
argmax agreement with ONNX Runtime on every artifact kind edgeseg writes (FP32, FP16, Q/DQ INT8) of
the shipped default model, the runtime paths (Segmenter, stream(), run, eval, bench, demo's table,
several streams, ROS through the fake rclpy), one compiled model shared by spawned workers, and bad
input as one line with exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("openvino")

from edgeseg.cli import app  # noqa: E402
from edgeseg.defaults import default_model_path  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.runtime.backends import BackendOptions, load_backend  # noqa: E402
from edgeseg.runtime.backends.openvino import shared_core  # noqa: E402
from edgeseg.runtime.segmenter import Segmenter  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def variants(tmp_path_factory) -> dict[str, Path]:
    """The shipped default model's FP32 export, its FP16 file and both INT8 forms (the calibration
    statistics from 8 generated scenes; enough for agreement, this is not the accuracy gate)."""
    from edgeseg.artifacts import card_from_metadata, int8_path, onnx_metadata, variant_path
    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration
    from edgeseg.calib.quantize import quantize_cpu_form, quantize_tensorrt_form
    from edgeseg.export.fp16 import write_fp16

    folder = tmp_path_factory.mktemp("ov") / "edgeseg-default"
    folder.mkdir()
    base = folder / "edgeseg-default.onnx"
    shutil.copy(default_model_path("onnx"), base)
    card = card_from_metadata(base, onnx_metadata(base))
    write_fp16(base)
    stats = calibrate(base, card, open_calibration("synth", card, 8, seed=0), method="minmax")
    quantize_tensorrt_form(base, card, stats, int8_path(base, "qdq"))
    quantize_cpu_form(base, card, stats, int8_path(base, "cpu"))
    return {
        "fp32": base,
        "fp16": variant_path(base, "fp16"),
        "int8-qdq": int8_path(base, "qdq"),
        "int8-cpu": int8_path(base, "cpu"),
    }


def frames(n: int = 3, size=(256, 512)) -> list[np.ndarray]:
    from edgeseg.data.synth import SceneGenerator

    gen = SceneGenerator(*size, seed=7)
    return [cv2.cvtColor(gen.scene(i)[0], cv2.COLOR_RGB2BGR) for i in range(n)]


@pytest.mark.parametrize("kind", ["fp32", "fp16", "int8-qdq"])
def test_argmax_agrees_with_onnxruntime_on_every_artifact_kind(variants, kind):
    path = variants[kind]
    with (
        Segmenter(path, BackendOptions(backend="openvino", threads=2)) as ov,
        Segmenter(path, BackendOptions(backend="onnxruntime", threads=2)) as ort,
    ):
        assert ov.backend.name == "openvino" and ort.backend.name == "onnxruntime"
        assert ov.card.precision == ort.card.precision
        same = [ov.infer(f) == ort.infer(f) for f in frames()]
    # FP32 and FP16 run the same arithmetic up to rounding; INT8 rounds at different points (ORT
    # without WeightBiasQuantization keeps bias in float as TensorRT does; OpenVINO folds Q/DQ into
    # its own INT8 kernels), so its bound is looser but still far above chance (1/8 classes). Pixel
    # agreement over all frames, as export's parity check counts it: one frame's share swings with the
    # CPU's INT8 kernels (0.974-0.992 per frame on an AVX2-only CPU, docs/int8.md; 0.993 with VNNI).
    bound = {"fp32": 0.999, "fp16": 0.995, "int8-qdq": 0.97}[kind]
    agree = float(np.mean(np.stack(same)))
    assert agree >= bound, [float(s.mean()) for s in same]


def test_one_compiled_model_serves_spawned_workers(variants):
    """`spawn()` hands out another infer request on the same compiled model, not a second copy."""
    backend = load_backend(variants["fp32"], BackendOptions(backend="openvino", streams=2, threads=1))
    try:
        other = backend.spawn()
        assert other._compiled is backend._compiled and backend._compiled.users == 2
        assert backend.describe()["hint"] == "throughput" and backend.describe()["streams"] == 2
        batch = np.random.default_rng(0).normal(size=(1, 3, 256, 512)).astype(np.float32)
        np.testing.assert_allclose(other.run(batch), backend.run(batch), rtol=1e-4, atol=1e-4)
        other.close()
        assert backend._compiled.model is not None  # the first still holds it
    finally:
        backend.close()
    assert backend._compiled.model is None


def test_submit_keeps_several_batches_in_flight(variants):
    """With several streams, one backend keeps one request per stream busy: submit() returns at once and
    result() hands the outputs back in order."""
    batch = np.random.default_rng(1).normal(size=(2, 1, 3, 256, 512)).astype(np.float32)
    with load_backend(variants["fp32"], BackendOptions(backend="openvino", streams=2)) as backend:
        assert backend.max_in_flight == 2
        backend.submit(batch[0])
        backend.submit(batch[1])
        with pytest.raises(EdgesegError, match="already in flight"):
            backend.submit(batch[0])
        first, second = backend.result(), backend.result()
        np.testing.assert_allclose(first, backend.run(batch[0]), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(second, backend.run(batch[1]), rtol=1e-4, atol=1e-4)


def test_spawned_workers_take_over_the_models_requests_one_per_stream(variants):
    """N workers or streams on a model compiled for N CPU streams hold N infer requests: each spawn()
    takes one of the model's own over (its in-flight limit goes down with it) instead of making one
    more, which left the first worker keeping two frames in flight on a model with a stream for each
    worker (a frame waiting for a stream: inference p50 389-548 ms against 204-388 ms with one each,
    interleaved, shared machine at load 12). Past the streams a spawn makes a request of its own."""
    backend = load_backend(variants["fp32"], BackendOptions(backend="openvino", streams=2, threads=1))
    first = backend._requests[1]
    other = backend.spawn()
    assert other._requests == [first] and backend.max_in_flight == other.max_in_flight == 1
    assert len(backend._requests) + len(other._requests) == 2
    third = backend.spawn()  # more workers than streams: one more request, queued by OpenVINO
    assert len(third._requests) == 1 and third._requests[0] not in backend._requests + other._requests
    batch = np.random.default_rng(2).normal(size=(1, 3, 256, 512)).astype(np.float32)
    np.testing.assert_allclose(other.run(batch), backend.run(batch), rtol=1e-4, atol=1e-4)
    for b in (third, other, backend):
        b.close()
    assert backend._compiled.model is None


def test_a_pipeline_with_two_workers_makes_two_requests(variants, monkeypatch):
    """`edgeseg run --workers 2` on OpenVINO: one compiled model, two CPU streams, two requests in all."""
    from edgeseg.runtime import stream
    from edgeseg.runtime.backends import openvino as ovb

    made: list[int] = []
    init = ovb.OpenVINOBackend.__init__

    def counting(self, *args, **kw):
        init(self, *args, **kw)
        made.append(0 if kw.get("_request") is not None else len(self._requests))

    monkeypatch.setattr(ovb.OpenVINOBackend, "__init__", counting)
    got = list(stream(variants["fp32"], options=BackendOptions(backend="openvino"), workers=2, synthetic=4))
    assert len(got) == 4 and sum(made) == 2, made


def test_two_threads_run_requests_of_one_compiled_model_at_once(tiny_onnx):
    """Several streams on a CPU run a request per thread on one compiled model (runtime/request_pool.py).
    Fed through OpenVINO's Python input copy (`start_async({0: batch})`) two such threads deadlocked in
    about half of the runs of this loop (OpenVINO 2026.4); the backend hands the batch over as a shared
    tensor instead. Every output is still its own input's."""
    import threading

    model = tiny_onnx(size=(32, 64), batch="N")
    backend = load_backend(model, BackendOptions(backend="openvino", streams=2, threads=1))
    other = backend.spawn()
    rng = np.random.default_rng(3)
    inputs = [rng.normal(size=(1, 3, 32, 64)).astype(np.float32) for _ in range(2)]
    expected = [backend.run(x) for x in inputs]
    wrong: list[int] = []

    def loop(b, k: int) -> None:
        for i in range(3000):
            if not np.allclose(b.run(inputs[k]), expected[k], rtol=1e-5, atol=1e-5):
                wrong.append(i)

    threads = [
        threading.Thread(target=loop, args=(b, k), daemon=True) for k, b in enumerate((backend, other))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "two requests of one compiled model deadlocked"
    assert not wrong
    other.close()
    backend.close()


def test_threads_are_pinned_only_when_they_take_every_core():
    """OpenVINO pins its threads from the first core in every process alike, so processes that each
    take a share of the cores would all run on core 0; a share turns pinning off."""
    from edgeseg.runtime.backends.openvino import pins_threads

    assert pins_threads(None, 1, cores=2) and pins_threads(2, 1, cores=2) and pins_threads(1, 2, cores=2)
    assert not pins_threads(1, 1, cores=2) and not pins_threads(2, 1, cores=8)


def test_a_process_with_a_share_of_the_cores_runs_unpinned(variants):
    """The compiled model says what it does (described in run's report)."""
    from edgeseg.runtime.workers import available_cores

    with load_backend(
        variants["fp32"], BackendOptions(backend="openvino", threads=available_cores())
    ) as backend:
        assert backend.describe()["cpu_pinning"] is True
    if available_cores() > 1:
        with load_backend(variants["fp32"], BackendOptions(backend="openvino", threads=1)) as backend:
            assert backend.describe()["cpu_pinning"] is False


def test_latency_hint_for_one_stream(variants):
    with load_backend(variants["fp32"], BackendOptions(backend="openvino")) as backend:
        assert backend.describe()["hint"] == "latency" and backend.max_in_flight == 1
        assert backend.batch_limits == (1, 1) and backend.computes_on_cpu


def test_stream_and_several_streams(variants):
    from edgeseg.runtime import stream

    ov = BackendOptions(backend="openvino")
    got = list(stream(variants["int8-qdq"], options=ov, synthetic=3))
    assert len(got) == 3 and got[0].class_map.shape == (256, 512)
    many = list(
        stream(
            variants["fp32"],
            sources=[{"synthetic": 2}, {"synthetic": 2}],
            options=ov,
        )
    )
    assert len(many) == 4 and len({r.stream for r in many}) == 2


def test_run_cli_on_openvino_reports_it(variants, tmp_path):
    report = tmp_path / "r.json"
    r = runner.invoke(app, ["run", "--model", str(variants["fp16"]), "--backend", "openvino", "--frames", "4",
                            "--report", str(report), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(report.read_text())
    assert data["backend"]["backend"] == "openvino" and data["backend"]["device"] == "CPU"
    assert data["frames"]["processed"] == 4 and data["metrics"]["miou"] > 0.3


def test_eval_cli_on_openvino(variants):
    r = runner.invoke(app, ["eval", str(variants["fp32"]), "--backend", "openvino", "--data",
                            "synth:4", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[r.output.index("{") :])
    assert data["backend"]["backend"] == "openvino" and data["miou"] > 0.3


def test_bench_shows_openvino_rows_beside_onnxruntime(variants):
    from edgeseg import bench

    labels = [a.label for a in bench.discover(variants["fp32"], None)]
    assert "ONNX Runtime fp32" in labels and "OpenVINO fp32" in labels
    assert "OpenVINO int8 (Q/DQ form)" in labels  # the TensorRT-form file, on the CPU
    assert "OpenVINO int8 (CPU form)" not in labels  # OpenVINO cannot read the QOperator form


def test_a_file_openvino_cannot_read_is_one_line_exit_2(variants, tmp_path):
    """The QOperator CPU form (per-channel QLinearConv) and a file that is not ONNX at all."""
    r = runner.invoke(app, ["run", "--model", str(variants["int8-cpu"]), "--backend", "openvino", "--frames",
                            "1"])  # fmt: skip
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and "OpenVINO cannot" in lines[-1] and "Traceback" not in r.output
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    r = runner.invoke(app, ["run", "--model", str(broken), "--backend", "openvino", "--frames", "1"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output


def test_an_operator_openvino_cannot_convert_is_named_in_the_one_line(variants, tmp_path):
    """A valid ONNX whose operator OpenVINO has no conversion rule for: its report puts the operator
    three lines below a heading ending in ':' (its first useful line said only that conversion failed)."""
    import onnx
    from onnx import TensorProto, helper

    from edgeseg.artifacts import card_from_metadata, onnx_metadata

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8, 64, 64])
    graph = helper.make_graph([helper.make_node("FancyOp", ["input"], ["logits"], domain="com.example")],
                              "g", [x], [y])  # fmt: skip
    model = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.example", 1)]), model)  # fmt: skip
    card = card_from_metadata(variants["fp32"], onnx_metadata(variants["fp32"])).replace(input_size=(64, 64))
    card.save_json(tmp_path / "custom.card.json")
    r = runner.invoke(app, ["run", "--model", str(model), "--backend", "openvino", "--frames", "1"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    last = " ".join(r.output.split()).split("error: ")[-1]
    assert last.startswith(f"OpenVINO cannot read {model}:"), last
    assert "com.example.FancyOp" in last, last


MODELS_CLOSED_OUT_OF_ORDER = """
import os, signal, sys
from edgeseg.runtime.backends import BackendOptions, load_backend
ov = BackendOptions(backend="openvino")
first = load_backend(sys.argv[1], ov)
second = load_backend(sys.argv[1], ov)
first.close(); del first     # the older model goes while the newer one lives on
second.close(); del second
third = load_backend(sys.argv[1], ov); third.close(); del third
signal.signal(signal.SIGINT, lambda *_: print("handled SIGINT"))
os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the main thread, where the models were made
print("still running")
"""


def test_a_signal_after_models_closed_out_of_order_is_handled_not_a_crash(tiny_onnx):
    """OpenVINO's CPU plugin gives each Core's creating thread an alternate signal stack and puts the
    previous one back when the Core goes: with a Core per model, closing the older model first left the
    main thread on freed memory, and the next Ctrl-C or SIGTERM ended the process with SIGSEGV (rc -11;
    in the suite, a real Ctrl-C test after the ROS tests). One Core per process (shared_core) keeps it."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-X", "faulthandler", "-c", MODELS_CLOSED_OUT_OF_ORDER, str(tiny_onnx())],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.split() == ["handled", "SIGINT", "still", "running"]
    assert shared_core() is shared_core()


def test_a_missing_device_is_one_line_exit_2(variants):
    r = runner.invoke(app, ["run", "--model", str(variants["fp32"]), "--backend", "openvino", "--device", "npu",
                            "--frames", "1"])  # fmt: skip
    if "NPU" in shared_core().available_devices:
        pytest.skip("this machine has an NPU")
    assert r.exit_code == 2, r.output
    assert "OpenVINO has no NPU device" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["run", "--model", str(variants["fp32"]), "--backend", "openvino", "--device", "tpu",
                            "--frames", "1"])  # fmt: skip
    assert r.exit_code == 2 and "OpenVINO runs on cpu, gpu, npu, auto" in r.output, r.output


@pytest.mark.parametrize("backend", [[], ["--backend", "onnxruntime"]])
def test_a_gpu_asked_for_with_device_on_onnx_runtime_is_refused_not_run_on_the_cpu(variants, backend):
    """ONNX Runtime takes its hardware from --providers: --device cuda used to run the file on the CPU
    (only the report's runtime line said so); now one line says what to ask for instead."""
    from edgeseg.runtime import Segmenter

    r = runner.invoke(
        app, ["run", "--model", str(variants["fp32"]), "--device", "cuda", "--frames", "1", *backend]
    )
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "--device cuda does not apply to" in r.output and "--providers CUDAExecutionProvider" in r.output
    with pytest.raises(EdgesegError, match="does not apply"):
        Segmenter(variants["fp32"], BackendOptions(device="cuda:1", backend="onnxruntime"))
    Segmenter(variants["fp32"], BackendOptions(device="auto", backend="onnxruntime")).close()


def test_the_cpu_rule_picks_the_runtime_and_run_reports_why(variants, tmp_path, monkeypatch):
    """Without --backend an .onnx on the CPU runs on OpenVINO where installed, except the QOperator
    form (OpenVINO cannot read it) and ONNX Runtime's GPU providers; run's report says which and why."""
    import importlib.util

    from edgeseg.runtime.backends import choose_backend

    assert choose_backend(variants["fp32"]).backend == "openvino"
    assert choose_backend(variants["int8-qdq"]).backend == "openvino"
    assert choose_backend(variants["int8-cpu"]).backend == "onnxruntime"
    assert choose_backend(variants["fp32"], BackendOptions(providers="auto")).backend == "onnxruntime"
    assert choose_backend(variants["fp32"], BackendOptions(device="cuda")).backend == "onnxruntime"
    assert choose_backend(tmp_path / "m.fp16.engine").backend == "tensorrt"
    report = tmp_path / "r.json"
    r = runner.invoke(
        app, ["run", "--model", str(variants["fp32"]), "--frames", "2", "--report", str(report)]
    )
    assert r.exit_code == 0, r.output
    assert "runtime: openvino, installed and faster" in " ".join(r.output.split())
    data = json.loads(report.read_text())
    assert data["backend"]["backend"] == "openvino" and data["runtime"]["backend"] == "openvino"
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    fallback = choose_backend(variants["fp32"])
    assert fallback.backend == "onnxruntime" and "not installed" in fallback.reason
