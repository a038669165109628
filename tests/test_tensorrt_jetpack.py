"""Issue 24: what real TensorRT on every JetPack needs that the first fakes let through. Each test stands on a
fake behaviour citing its NVIDIA source (tests/fake_tensorrt/trt.py behaviours 8-13, trtexec.py), and
each failed on the code before the fix: several contexts on a dynamic engine, the labels output, engines
from the printed trtexec lines, plugins, external weights, ConvTranspose INT8 weights, pycuda clean-up."""

from __future__ import annotations

import gc
import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_tensorrt.install import install_trt
from fake_tensorrt.names import VERSIONS
from fake_tensorrt.trtexec import OPTIONS, VERSIONS_OF_LABEL, unknown_options
from onnx import TensorProto, helper, numpy_helper
from onnx_models import card_of, qdq_layer, save_with_card

from edgeseg.artifacts import sidecar_path
from edgeseg.errors import EdgesegError
from edgeseg.export.tensorrt_build import build_engine
from edgeseg.export.tensorrt_plan import EngineOptions, handoff_commands, inspect_onnx
from edgeseg.export.trt_compat import check_trt_compat
from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgeseg.runtime.backends.tensorrt import TensorRTBackend

DYNAMIC = {"min_shape": (1, 3, 8, 8), "opt_shape": (1, 3, 16, 16), "max_shape": (2, 3, 32, 32)}


def _batch(shape=(1, 3, 16, 16), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ------------------------------------------------------------------------------ 1. two workers, dynamic
@pytest.mark.parametrize("version", VERSIONS)
def test_two_workers_run_a_dynamic_engine_on_every_version(monkeypatch, tmp_path, tiny_onnx, version):
    trt = install_trt(monkeypatch, version)
    onnx_path = tiny_onnx(size=(16, 16), dynamic=True)
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(onnx_path, engine, EngineOptions(workers=2, **DYNAMIC))
    info = json.loads(sidecar_path(engine).read_text())
    # 8.5: a profile per worker; 8.6: the preview feature that lets contexts share one; 10+: shared anyway
    want_profiles = {"8.5.2": 2}.get(version, 1)
    assert info["optimization_profiles"] == want_profiles and info["workers"] == 2
    assert ("set_preview_feature", ("PROFILE_SHARING_0806", True)) in trt.calls or version != "8.6.1"
    ref = OnnxRuntimeBackend(onnx_path)
    first = TensorRTBackend(engine)
    second = first.spawn()
    outs: dict[int, list] = {}

    def work(k: int, backend: TensorRTBackend) -> None:
        backend.activate()
        try:
            outs[k] = [
                backend.run(_batch((1 + i % 2, 3, 16, 8 * (1 + i)), seed=k * 10 + i)) for i in range(3)
            ]
        finally:
            backend.deactivate()

    threads = [threading.Thread(target=work, args=(k, b)) for k, b in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in (0, 1):
        assert len(outs.get(k, [])) == 3, f"worker {k} failed"
        for i, out in enumerate(outs[k]):
            np.testing.assert_allclose(
                out, ref.run(_batch((1 + i % 2, 3, 16, 8 * (1 + i)), seed=k * 10 + i)), rtol=1e-5, atol=1e-5
            )
    second.close()
    first.close()


def test_the_fake_gives_a_second_context_no_profile_on_tensorrt_8(monkeypatch, tmp_path, tiny_onnx):
    """Behaviour 8 itself: on 8.5 a second context fails until it gets a profile nobody else holds."""
    trt = install_trt(monkeypatch, "8.5.2")
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(tiny_onnx(size=(16, 16), dynamic=True), engine, EngineOptions(**DYNAMIC))
    runtime = trt.Runtime(trt.ILogger())
    cuda_engine = runtime.deserialize_cuda_engine(engine.read_bytes())
    a, b = cuda_engine.create_execution_context(), cuda_engine.create_execution_context()
    assert a.set_input_shape("input", (1, 3, 16, 16))
    assert not b.set_input_shape("input", (1, 3, 16, 16)) and b.active_optimization_profile == -1
    assert not b.set_optimization_profile_async(0, 0)  # profile 0 is held by the first context
    del a
    gc.collect()
    assert b.set_optimization_profile_async(0, 0) and b.set_input_shape("input", (1, 3, 16, 16))


def test_more_workers_than_profiles_is_one_clear_line(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "8.5.2")
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(tiny_onnx(size=(16, 16), dynamic=True), engine, EngineOptions(**DYNAMIC))
    with TensorRTBackend(engine) as first:
        with pytest.raises(EdgesegError, match=r"1 optimization profile.*--workers 2") as err:
            first.spawn()
        assert "\n" not in str(err.value)
        assert first.run(_batch()).shape == (1, 3, 16, 16)  # the first worker is unharmed


def test_pipeline_with_two_workers_on_a_dynamic_engine_on_tensorrt_85(monkeypatch, tmp_path, tiny_onnx):
    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.runtime.launch import open_pipeline
    from edgeseg.runtime.sources import open_source

    install_trt(monkeypatch, "8.5.2")
    onnx_path = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(16, 16), dynamic=True)
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(onnx_path, engine, EngineOptions(workers=2, **DYNAMIC))
    pipe = open_pipeline(engine, open_source(synthetic=6, synthetic_size=(16, 16)), workers=2)
    assert pipe.run().processed == 6


# ------------------------------------------------------------------------------ 2. labels output
def _labels_onnx(tmp_path: Path, tiny_onnx, dtype: int, name: str = "tiny") -> Path:
    """The tiny segmenter with `edgeseg export --output labels`' tail: ArgMax over classes -> Cast."""
    model = onnx.load(tiny_onnx(size=(16, 16), name=name))
    graph = model.graph
    graph.node[-1].output[0] = "scores"
    graph.node.extend(
        [
            helper.make_node("ArgMax", ["scores"], ["argmax"], name="argmax", axis=1, keepdims=0),
            helper.make_node("Cast", ["argmax"], ["labels"], name="to_labels", to=dtype),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("labels", dtype, [1, 16, 16]))
    path = tmp_path / f"{name}.labels.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fake_refuses_argmax_cast_to_uint8_like_tensorrt(monkeypatch, tmp_path, tiny_onnx, version):
    trt = install_trt(monkeypatch, version)
    data = _labels_onnx(tmp_path, tiny_onnx, TensorProto.UINT8).read_bytes()
    builder = trt.Builder(trt.ILogger())
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(1 << int(flag) if flag is not None and version.startswith("8") else 0)
    parser = trt.OnnxParser(network, trt.ILogger())
    assert not parser.parse(data)
    assert "INT64 to UINT8" in parser.get_error(0).desc()


def test_compat_check_refuses_uint8_labels_and_accepts_int32(tmp_path, tiny_onnx):
    bad = check_trt_compat(onnx.load(_labels_onnx(tmp_path, tiny_onnx, TensorProto.UINT8, "a")))
    assert any(e.startswith("Cast:") and "UINT8" in e for e in bad.errors), bad.errors
    good = check_trt_compat(onnx.load(_labels_onnx(tmp_path, tiny_onnx, TensorProto.INT32, "b")))
    assert not good.errors


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", [TensorProto.INT32, TensorProto.UINT8])
def test_labels_output_builds_and_runs_on_every_version(monkeypatch, tmp_path, tiny_onnx, version, dtype):
    """An INT32 labels file builds as is; a UINT8 one (for ONNX Runtime) is built with INT32 labels."""
    install_trt(monkeypatch, version)
    path = _labels_onnx(tmp_path, tiny_onnx, dtype)
    engine = tmp_path / "tiny.labels.engine"
    result = build_engine(path, engine, EngineOptions())
    if dtype == TensorProto.UINT8:
        assert any("INT32" in n for n in result.plan.notes)
    batch = _batch()
    with TensorRTBackend(engine) as backend, OnnxRuntimeBackend(path) as ref:
        got = backend.run(batch)
        assert got.dtype == np.int32 and got.shape == (1, 16, 16)
        np.testing.assert_array_equal(got, ref.run(batch).astype(np.int32))


def test_handoff_of_uint8_labels_gives_only_the_edgeseg_line(tmp_path, tiny_onnx):
    path = _labels_onnx(tmp_path, tiny_onnx, TensorProto.UINT8)
    graph = inspect_onnx(onnx.load(path))
    assert graph.uint8_labels
    commands, notes = handoff_commands(path, tmp_path / "x.engine", EngineOptions(), {}, graph)
    assert list(commands) == ["edgeseg"] and any("UINT8" in n for n in notes)


def test_export_labels_default_is_int32(tmp_path):
    """`edgeseg export --output labels` writes what every TensorRT builds; uint8 is asked for by name."""
    import inspect

    from edgeseg.export.onnx_export import export_onnx

    assert inspect.signature(export_onnx).parameters["labels_dtype"].default == "int32"


# ------------------------------------------------------------------------------ 4. trtexec lines
OPTION_SETS = {
    "plain": EngineOptions(),
    "fp16": EngineOptions(precision="fp16"),
    "version-compatible": EngineOptions(version_compatible=True),
    "opt-level": EngineOptions(optimization_level=4),
    "dla": EngineOptions(precision="fp16", dla_core=0),
    "dynamic-cache": EngineOptions(timing_cache=Path("t.cache"), workspace_mib=256, **DYNAMIC),
}


@pytest.mark.parametrize("case", list(OPTION_SETS))
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_printed_trtexec_line_parses_on_every_version_its_label_names(tmp_path, case, precision):
    """8.5's trtexec (sampleOptions.cpp 8.5.2) knows neither --builderOptimizationLevel nor
    --versionCompatible; 11.x's has no --fp16/--int8."""
    from edgeseg.export.tensorrt_plan import HANDOFF_LABELS, GraphInfo

    graph = GraphInfo(
        has_qdq=precision == "int8", fp16_graph=precision == "fp16",
        inputs={"input": ("N", 3, "H", "W") if case == "dynamic-cache" else (1, 3, 16, 16)},
        node_names=(), node_ops=(),
    )  # fmt: skip
    options = OPTION_SETS[case]
    profiles = {"input": {"min": [1, 3, 8, 8], "opt": [1, 3, 16, 16], "max": [2, 3, 32, 32]}}
    commands, notes = handoff_commands(
        tmp_path / "m.onnx",
        tmp_path / "m.engine",
        options,
        profiles if case == "dynamic-cache" else {},
        graph,
    )
    assert set(VERSIONS_OF_LABEL) >= {k for k in commands if k.startswith("trtexec")}
    covered = set()
    for key, line in commands.items():
        if key == "edgeseg":
            continue
        assert key in HANDOFF_LABELS
        for version in VERSIONS_OF_LABEL[key]:
            assert not unknown_options(line, version), (key, version, line)
            covered.add(version)
    if options.version_compatible or options.optimization_level is not None:
        assert "8.5" not in covered and any("8.5" in n for n in notes), notes  # said why, not printed
    assert set(OPTIONS) - covered <= {"8.5", "8.6"}


def test_trtexec_version_compatible_engine_without_sidecar_loads(monkeypatch, tmp_path, tiny_onnx, capsys):
    """What `trtexec --versionCompatible --saveEngine` leaves: an engine that needs host code allowed."""
    install_trt(monkeypatch, "10.3.0")
    onnx_path = tiny_onnx(name="tiny")
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(onnx_path, engine, EngineOptions(version_compatible=True))
    sidecar_path(engine).unlink()
    with TensorRTBackend(engine) as backend, OnnxRuntimeBackend(onnx_path) as ref:
        np.testing.assert_allclose(
            backend.run(_batch((1, 3, 32, 48))), ref.run(_batch((1, 3, 32, 48))), atol=1e-5
        )
    assert "host code" in capsys.readouterr().err


# ------------------------------------------------------------------------------ 5. plugins, weights, axes
def _instnorm_onnx(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(3, 3, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(np.ones(3, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(3, np.float32), "beta"),
    ]
    nodes = [
        helper.make_node("InstanceNormalization", ["input", "gamma", "beta"], ["norm"], name="inorm"),
        helper.make_node("Conv", ["norm", "w"], ["logits"], name="conv"),
    ]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 16, 16])
    model = helper.make_model(
        helper.make_graph(nodes, "inorm", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    return save_with_card(model, tmp_path / "toy.onnx", card_of(3, (16, 16), "toy"))


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1"])
def test_an_engine_with_a_plugin_layer_loads_in_a_fresh_process(monkeypatch, tmp_path, version):
    install_trt(monkeypatch, version)
    onnx_path = _instnorm_onnx(tmp_path)
    engine = tmp_path / "toy.fp32.engine"
    build_engine(onnx_path, engine, EngineOptions())
    trt = install_trt(monkeypatch, version)  # the robot's process: nothing registered its plugins yet
    with TensorRTBackend(engine) as backend, OnnxRuntimeBackend(onnx_path) as ref:
        np.testing.assert_allclose(backend.run(_batch()), ref.run(_batch()), rtol=1e-4, atol=1e-4)
    whats = [w for w, _ in trt.calls]
    assert whats.index("init_libnvinfer_plugins") < whats.index("deserialize_cuda_engine")


@pytest.mark.parametrize("version", VERSIONS)
def test_onnx_with_external_weights_builds_from_another_directory(monkeypatch, tmp_path, tiny_onnx, version):
    install_trt(monkeypatch, version)
    model = onnx.load(tiny_onnx(size=(16, 16)))
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "big.onnx"
    onnx.save(model, path, save_as_external_data=True, location="big.weights", size_threshold=0)
    assert (folder / "big.weights").is_file()
    monkeypatch.chdir(tmp_path)  # not the model's folder
    engine = folder / "big.fp32.engine"
    build_engine(path, engine, EngineOptions())
    with TensorRTBackend(engine) as backend, OnnxRuntimeBackend(path) as ref:
        np.testing.assert_allclose(backend.run(_batch()), ref.run(_batch()), rtol=1e-5, atol=1e-5)


def _convtranspose_qdq_onnx(tmp_path: Path) -> Path:
    """FCN's upsampling, quantized as calib/ writes it: ConvTranspose weights [C, K, kh, kw] per channel
    on axis 1 (C == K, as in FCN, where reading the scales on the wrong axis goes unnoticed)."""
    rng = np.random.default_rng(1)
    w = (
        rng.normal(size=(3, 3, 4, 4)).astype(np.float32)
        * np.array([1, 0.1, 0.01], np.float32)[None, :, None, None]
    )
    model = qdq_layer(
        w, "ConvTranspose", axis=1, x_scale=0.05, hw=(8, 8), out_hw=(16, 16), name="upscore",
        strides=[2, 2], pads=[1, 1, 1, 1],
    )  # fmt: skip
    return save_with_card(model, tmp_path / "toy.int8-qdq.onnx", card_of(3, (8, 8), "toy", precision="int8"))


def _engine_onnx(engine: Path) -> onnx.ModelProto:
    """The ONNX the fake engine holds (its plan is a header line + the parsed model)."""
    return onnx.load_from_string(engine.read_bytes().split(b"\n", 1)[1])


@pytest.mark.parametrize("version", VERSIONS)
def test_convtranspose_int8_weights_take_the_axis_of_each_version(monkeypatch, tmp_path, version):
    """8.5-10.1 read ConvTranspose weight scales per input channel, 10.2+ per output channel (axis 1, as
    calib/ writes them): for 8.x the build re-expresses them per tensor, which both readings agree on."""
    install_trt(monkeypatch, version)
    path = _convtranspose_qdq_onnx(tmp_path)
    engine = tmp_path / "toy.int8.engine"
    result = build_engine(path, engine, EngineOptions(precision="int8"))
    dq = next(n for n in _engine_onnx(engine).graph.node if n.name == "dq_w")
    scale = next(t for t in _engine_onnx(engine).graph.initializer if t.name == dq.input[1])
    if version.startswith("8"):
        assert list(scale.dims) in ([], [1]) and any("ConvTranspose" in n for n in result.plan.notes)
    else:
        assert list(scale.dims) == [3] and next(a.i for a in dq.attribute if a.name == "axis") == 1
    x = _batch((1, 3, 8, 8))
    with TensorRTBackend(engine) as backend, OnnxRuntimeBackend(path) as ref:
        want = ref.run(x)
        got = backend.run(x)
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()


# ------------------------------------------------------------------------------ 5. pycuda clean-up
def test_pycuda_frees_context_engine_and_runtime_inside_the_device_context(monkeypatch, tmp_path, tiny_onnx):
    trt = install_trt(monkeypatch, "8.5.2", binding="pycuda")
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(tiny_onnx(), engine, EngineOptions())
    trt.gpu.out_of_context_frees.clear()
    backend = TensorRTBackend(engine)
    other = backend.spawn()
    backend.run(_batch((1, 3, 32, 48)))
    other.close()
    backend.close()
    gc.collect()
    assert trt.gpu.out_of_context_frees == []
    assert trt.gpu.live() == 0 and trt.gpu.primary_retains == 0


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_build_workers_then_run_workers_through_the_cli_on_tensorrt_85(monkeypatch, tiny_onnx, binding):
    """JetPack 5.1: `edgeseg build --workers 2` on a dynamic export, then `edgeseg run --workers 2`."""
    from typer.testing import CliRunner

    from edgeseg.cli import app
    from edgeseg.data.synth import SYNTH_CLASSES

    runner = CliRunner()
    install_trt(monkeypatch, "8.5.2", binding=binding)
    onnx_path = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48), dynamic=True)
    shapes = ["--min-shape", "1x3x32x48", "--opt-shape", "1x3x256x512", "--max-shape", "1x3x256x512"]
    built = runner.invoke(
        app, ["build", str(onnx_path), "--target", "tensorrt", *shapes, "--workers", "2", "--json"]
    )
    assert built.exit_code == 0, built.output
    engine = json.loads(built.stdout)["engine"]
    assert json.loads(sidecar_path(Path(engine)).read_text())["optimization_profiles"] == 2
    args = [
        "run",
        "--model",
        engine,
        "--synthetic",
        "--frames",
        "4",
        "--threads",
        "1",
        "--workers",
        "2",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
