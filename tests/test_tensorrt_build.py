"""Engine building against the fake TensorRT 8.6 / 10.3 / 11.4 modules: flag choices per version, timing
cache, optimization profiles, DLA, legacy calibration, error paths, sidecar, and the no-GPU hand-off."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from fake_tensorrt.cuda import FakeGpu
from fake_tensorrt.install import hide_trt, install_trt
from fake_tensorrt.names import VERSIONS
from onnx import TensorProto, helper
from onnx_models import card_of, qdq_layer, save_with_card

from edgeseg.artifacts import sidecar_path
from edgeseg.build import BuildOptions, build
from edgeseg.card import ModelCard, sha256_file
from edgeseg.errors import EdgesegError, ExitCode
from edgeseg.export.fp16 import write_fp16
from edgeseg.export.tensorrt_build import _make_progress_monitor, build_engine
from edgeseg.export.tensorrt_features import detect
from edgeseg.export.tensorrt_plan import EngineOptions, inspect_onnx, parse_shape, plan_build


@pytest.fixture
def qdq_onnx(tmp_path):
    """A TensorRT-style Q/DQ graph: symmetric int8, zero point 0, per-channel weights."""
    w = np.random.default_rng(0).normal(size=(3, 3, 1, 1)).astype(np.float32)
    model = qdq_layer(w, "Conv", axis=0, x_scale=0.02, hw=(16, 16), out_hw=(16, 16), name="conv")
    return save_with_card(
        model, tmp_path / "toy.int8-qdq.onnx", card_of(3, (16, 16), "toy", precision="int8")
    )


@pytest.fixture
def fp16_onnx(tmp_path, tiny_onnx):
    return write_fp16(tiny_onnx(size=(16, 16)), tmp_path / "tiny.fp16.onnx")[0]


@pytest.fixture
def custom_op_onnx(tmp_path):
    nodes = [
        helper.make_node("Relu", ["input"], ["a"], name="stem_relu"),
        helper.make_node("MyFancyUpsample", ["a"], ["logits"], name="decoder/upsample_7", domain="custom"),
    ]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 8, 8])
    model = helper.make_model(
        helper.make_graph(nodes, "custom", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)],
    )
    return save_with_card(model, tmp_path / "custom.onnx", card_of(3, (8, 8), "toy"))


EXPECTED_FLAGS = {
    # (version, graph) -> (network flags, builder flags)
    ("8.6.1", "fp32"): (["EXPLICIT_BATCH"], []),
    ("8.6.1", "fp16"): (["EXPLICIT_BATCH"], ["FP16"]),
    ("8.6.1", "int8"): (["EXPLICIT_BATCH"], ["INT8", "FP16"]),
    ("10.3.0", "fp32"): ([], []),
    ("10.3.0", "fp16"): (["STRONGLY_TYPED"], []),
    ("10.3.0", "int8"): (["STRONGLY_TYPED"], []),
    ("11.4.0.106", "fp32"): (["STRONGLY_TYPED"], []),
    ("11.4.0.106", "fp16"): (["STRONGLY_TYPED"], []),
    ("11.4.0.106", "int8"): (["STRONGLY_TYPED"], []),
}


@pytest.mark.parametrize(("version", "graph"), list(EXPECTED_FLAGS))
def test_flags_per_version_and_graph(monkeypatch, tmp_path, tiny_onnx, qdq_onnx, fp16_onnx, version, graph):
    trt = install_trt(monkeypatch, version)
    onnx_path = {"fp32": tiny_onnx(size=(16, 16)), "fp16": fp16_onnx, "int8": qdq_onnx}[graph]
    result = build_engine(onnx_path, tmp_path / "m.engine", EngineOptions(precision=graph))
    net_flags, builder_flags = EXPECTED_FLAGS[(version, graph)]
    assert result.plan.network_flags == net_flags
    assert result.plan.builder_flags == builder_flags
    assert ("create_network", sorted(net_flags)) in trt.calls
    assert [d for w, d in trt.calls if w == "set_flag"] == builder_flags
    # the fake accepted the build: it would have returned None for a flag set that version rejects
    assert result.engine.stat().st_size > 0 and result.info["precision"] == graph


def test_fake_rejects_what_real_tensorrt_rejects(monkeypatch, tiny_onnx, qdq_onnx):
    """Guards that the fakes fail like the real library, so the flag tests above mean something."""
    trt86 = install_trt(monkeypatch, "8.6.1")
    assert not hasattr(trt86.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert not hasattr(trt86, "IProgressMonitor")
    logger = trt86.ILogger()
    net = trt86.Builder(logger).create_network(0)  # no EXPLICIT_BATCH on 8.6
    parser = trt86.OnnxParser(net, logger)
    assert not parser.parse(Path(tiny_onnx()).read_bytes())
    assert "explicit batch" in parser.get_error(0).desc()
    builder = trt86.Builder(logger)
    net = builder.create_network(1 << int(trt86.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    trt86.OnnxParser(net, logger).parse(qdq_onnx.read_bytes())
    assert builder.build_serialized_network(net, builder.create_builder_config()) is None  # Q/DQ without INT8

    trt11 = install_trt(monkeypatch, "11.4.0.106")
    for missing in ("FP16", "INT8"):
        assert not hasattr(trt11.BuilderFlag, missing)
    assert not hasattr(trt11.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert not hasattr(trt11, "IInt8EntropyCalibrator2")
    with pytest.raises(AttributeError):
        trt11.Builder(trt11.ILogger()).create_builder_config().int8_calibrator = object()

    trt10 = install_trt(monkeypatch, "10.3.0")
    builder = trt10.Builder(trt10.ILogger())
    net = builder.create_network(1 << int(trt10.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    trt10.OnnxParser(net, trt10.ILogger()).parse(qdq_onnx.read_bytes())
    config = builder.create_builder_config()
    config.set_flag(trt10.BuilderFlag.INT8)
    assert builder.build_serialized_network(net, config) is None  # INT8 flag on a strongly typed network


def test_features_detected_by_api_not_version(monkeypatch):
    assert VERSIONS == ("8.5.2", "8.6.1", "10.3.0", "11.4.0.106")
    got = {v: detect(install_trt(monkeypatch, v)) for v in VERSIONS}
    assert [got[v].explicit_batch_flag for v in VERSIONS] == [True, True, True, False]
    assert [got[v].strongly_typed for v in VERSIONS] == [False, False, True, True]
    assert [got[v].int8_flag for v in VERSIONS] == [True, True, True, False]
    assert [got[v].legacy_calibrator for v in VERSIONS] == [True, True, True, False]
    assert [got[v].progress_monitor for v in VERSIONS] == [False, False, True, True]
    # JetPack 5.1's TensorRT 8.5 predates both (NVIDIA/TensorRT tags 8.5.2/8.5.3 bind neither)
    assert [got[v].version_compatible for v in VERSIONS] == [False, True, True, True]
    assert [got[v].optimization_level for v in VERSIONS] == [False, True, True, True]
    assert [got[v].engine_host_code for v in VERSIONS] == [False, True, True, True]
    assert [got[v].calibration_profile for v in VERSIONS] == [True, True, True, False]


def test_tensorrt_85_builds_and_refuses_what_it_lacks(monkeypatch, tmp_path, tiny_onnx):
    """JetPack 5.1 (TensorRT 8.5): a plain build works; 8.6-only options are refused in one line before
    any TensorRT call, not by an AttributeError from the bindings."""
    trt = install_trt(monkeypatch, "8.5.2")
    r = build_engine(tiny_onnx(), tmp_path / "a.engine", EngineOptions(precision="fp16"))
    assert r.plan.network_flags == ["EXPLICIT_BATCH"] and r.plan.builder_flags == ["FP16"]
    for opts, match in (
        (EngineOptions(version_compatible=True), "8.5.2 cannot build version-compatible engines"),
        (EngineOptions(optimization_level=4), "8.5.2 has no builder optimization level"),
    ):
        trt.calls.clear()
        with pytest.raises(EdgesegError, match=match):
            build_engine(tiny_onnx(), tmp_path / "b.engine", opts)
        assert not any(what == "Builder" for what, _ in trt.calls)


def test_fp16_request_on_fp32_graph(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "8.6.1")
    r = build_engine(tiny_onnx(), tmp_path / "a.engine", EngineOptions(precision="fp16"))
    assert r.plan.builder_flags == ["FP16"]  # 8.6: weakly typed, FP16 by flag
    install_trt(monkeypatch, "11.4.0.106")
    with pytest.raises(EdgesegError, match="strongly typed: FP16 must be in the ONNX graph"):
        build_engine(tiny_onnx(), tmp_path / "b.engine", EngineOptions(precision="fp16"))


def test_int8_needs_qdq_graph(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "10.3.0")
    with pytest.raises(EdgesegError, match="no QuantizeLinear/DequantizeLinear nodes"):
        build_engine(tiny_onnx(), tmp_path / "a.engine", EngineOptions(precision="int8"))


def _calib_batches():
    rng = np.random.default_rng(5)
    return [rng.normal(size=(1, 3, 32, 48)).astype(np.float32) for _ in range(4)]


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_legacy_calibrator_with_cache(monkeypatch, tmp_path, tiny_onnx, version):
    trt = install_trt(monkeypatch, version)
    cache = tmp_path / "calib.cache"
    opts = EngineOptions(
        precision="int8", legacy_calibrator=True, calibration_cache=cache, calibration_batches=_calib_batches
    )
    r = build_engine(tiny_onnx(), tmp_path / "a.engine", opts)
    assert r.plan.builder_flags == ["INT8", "FP16"] and r.plan.legacy_int8
    assert r.info["calibration_batches"] == 4 and trt.last_build["calibration"] == {
        "from_cache": False,
        "batches": 4,
    }
    absmax = max(float(np.abs(b).max()) for b in _calib_batches())
    assert json.loads(cache.read_bytes())["input_absmax"] == pytest.approx(
        absmax
    )  # data went through "device" memory
    build_engine(tiny_onnx(), tmp_path / "b.engine", opts)
    assert trt.last_build["calibration"] == {"from_cache": True, "batches": 0}


def test_legacy_calibrator_removed_in_11(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "11.4.0.106")
    opts = EngineOptions(precision="int8", legacy_calibrator=True, calibration_batches=_calib_batches)
    with pytest.raises(EdgesegError, match="removed implicit INT8 calibration.*drop --legacy-calibrator"):
        build_engine(tiny_onnx(), tmp_path / "a.engine", opts)


@pytest.mark.parametrize("version", VERSIONS)
def test_timing_cache_round_trip(monkeypatch, tmp_path, tiny_onnx, version):
    trt = install_trt(monkeypatch, version)
    cache = tmp_path / "cache" / "timing.cache"
    onnx_path = tiny_onnx()
    r1 = build_engine(onnx_path, tmp_path / "a.engine", EngineOptions(timing_cache=cache))
    assert cache.is_file() and not r1.info["timing_cache_reused"]
    assert trt.last_build["timing_cache_hits"] == 0
    r2 = build_engine(onnx_path, tmp_path / "b.engine", EngineOptions(timing_cache=cache))
    assert r2.info["timing_cache_reused"]
    assert trt.last_build["timing_cache_misses"] == 0 and trt.last_build["timing_cache_hits"] == 1
    assert ("set_timing_cache", 1) in trt.calls


def test_profiles_default_and_explicit(monkeypatch, tmp_path, tiny_onnx):
    trt = install_trt(monkeypatch, "10.3.0")
    dyn = tiny_onnx(size=(16, 24), dynamic=True, name="dyn")
    r = build_engine(dyn, tmp_path / "a.engine", EngineOptions())
    assert r.info["profiles"] == {  # batch 1..4 tuned for 4; H and W around the card's size (half..twice)
        "input": {"min": [1, 3, 8, 12], "opt": [4, 3, 16, 24], "max": [4, 3, 32, 64]}
    }
    opts = EngineOptions(min_shape=(1, 3, 8, 8), opt_shape=(1, 3, 16, 24), max_shape=(4, 3, 64, 64))
    r = build_engine(dyn, tmp_path / "b.engine", opts)
    assert ("set_shape", ("input", (1, 3, 8, 8), (1, 3, 16, 24), (4, 3, 64, 64))) in trt.calls
    assert r.info["profiles"]["input"]["max"] == [4, 3, 64, 64]
    with pytest.raises(EdgesegError, match="need an ONNX with dynamic axes"):
        build_engine(tiny_onnx(name="static"), tmp_path / "c.engine", opts)
    with pytest.raises(EdgesegError, match="axis 1 is fixed at 3"):
        bad = EngineOptions(min_shape=(1, 1, 8, 8), opt_shape=(1, 3, 8, 8), max_shape=(1, 3, 8, 8))
        build_engine(dyn, tmp_path / "d.engine", bad)


def test_default_profiles_follow_what_the_runtime_sends(monkeypatch, tmp_path, tiny_onnx):
    """No shapes given: a dynamic batch gets 1..N tuned for N (--max-batch, else ENGINE_MAX_BATCH) with
    H and W fixed at the export's; dynamic H and W alone (batch 1) get half..twice the card's stated
    inference size, tuned for it; both together get both. The build says so in its notes."""
    from edgeseg.defaults import ENGINE_MAX_BATCH as top

    install_trt(monkeypatch, "10.3.0")
    batch_only = tiny_onnx(size=(64, 96), batch="N", name="b")
    r = build_engine(batch_only, tmp_path / "b.engine", EngineOptions())
    assert r.info["profiles"]["input"] == {
        "min": [1, 3, 64, 96],
        "opt": [top, 3, 64, 96],
        "max": [top, 3, 64, 96],
    }
    assert f"profile of input: batch 1..{top} (tuned for {top}), height 64, width 96" in r.info["notes"]
    r = build_engine(batch_only, tmp_path / "b8.engine", EngineOptions(max_batch=8))
    assert r.info["profiles"]["input"]["max"] == [8, 3, 64, 96]
    hw_only = tiny_onnx(size=(64, 100), dynamic=True, batch=1, name="hw")
    r = build_engine(hw_only, tmp_path / "hw.engine", EngineOptions())
    assert r.info["profiles"]["input"] == {
        "min": [1, 3, 32, 50],
        "opt": [1, 3, 64, 100],
        "max": [1, 3, 128, 224],
    }
    assert (
        "profile of input: batch 1, height 32..128 (tuned for 64), width 50..224 (tuned for 100)"
        in r.info["notes"]
    )
    with pytest.raises(EdgesegError, match="--max-batch needs a dynamic batch axis.*export with --dynamic"):
        build_engine(hw_only, tmp_path / "x.engine", EngineOptions(max_batch=2))
    with pytest.raises(EdgesegError, match="--max-batch needs an ONNX with dynamic axes"):
        build_engine(tiny_onnx(name="static"), tmp_path / "y.engine", EngineOptions(max_batch=2))
    both = tiny_onnx(size=(64, 96), dynamic=True, name="both")
    r = build_engine(both, tmp_path / "both.engine", EngineOptions(max_batch=2))
    assert r.info["profiles"]["input"] == {
        "min": [1, 3, 32, 48],
        "opt": [2, 3, 64, 96],
        "max": [2, 3, 128, 192],
    }


def test_dla_profiles_hold_one_shape(monkeypatch, tmp_path, tiny_onnx):
    """NvInferRuntime.h (setDimensions): "If run on DLA, minimum, optimum, and maximum dimensions must
    to be the same": a DLA build of a dynamic ONNX gets batch 1 at the stated size, and unequal shapes
    or --max-batch are refused before TensorRT is asked."""
    install_trt(monkeypatch, "10.3.0", gpu=FakeGpu(dla_cores=2))
    dyn = tiny_onnx(size=(64, 96), dynamic=True)
    r = build_engine(dyn, tmp_path / "d.engine", EngineOptions(precision="fp16", dla_core=0))
    assert r.info["profiles"]["input"] == {
        "min": [1, 3, 64, 96],
        "opt": [1, 3, 64, 96],
        "max": [1, 3, 64, 96],
    }
    with pytest.raises(EdgesegError, match="DLA takes one shape per optimization profile"):
        EngineOptions(dla_core=0, max_batch=2)
    uneven = EngineOptions(
        dla_core=0, min_shape=(1, 3, 64, 96), opt_shape=(2, 3, 64, 96), max_shape=(2, 3, 64, 96)
    )
    with pytest.raises(
        EdgesegError, match="DLA takes one shape per optimization profile.*must be the same on DLA"
    ):
        build_engine(dyn, tmp_path / "e.engine", uneven)


def test_fake_profiles_are_refused_as_tensorrt_refuses_them(monkeypatch):
    """The fake's profile rules (its behaviour 14, each from NVIDIA's sources): a rank that differs
    from the min shape raises in set_shape (pyCore.cpp), a profile whose opt is outside min..max is
    not valid and add_optimization_profile returns -1 (NvInfer.h, IOptimizationProfile::isValid)."""
    trt = install_trt(monkeypatch, "10.3.0")
    builder = trt.Builder(trt.ILogger())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    with pytest.raises(RuntimeError, match="Shape provided for opt is inconsistent"):
        profile.set_shape("input", (1, 3, 8, 8), (1, 3, 8), (1, 3, 8, 8))
    profile.set_shape("input", (1, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8))  # opt above max: set, not valid
    assert config.add_optimization_profile(profile) == -1
    good = builder.create_optimization_profile()
    good.set_shape("input", (1, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 8))
    assert config.add_optimization_profile(good) == 0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"min_shape": (1, 3, 8, 8)}, "give all three"),
        (
            {"min_shape": (1, 3, 9, 8), "opt_shape": (1, 3, 8, 8), "max_shape": (1, 3, 8, 8)},
            "min <= opt <= max",
        ),
        ({"dla_core": -1}, "--dla-core must be 0 or more"),
        ({"workspace_mib": 0}, "--workspace must be a positive"),
        ({"optimization_level": 7}, "0..5"),
        ({"precision": "int4"}, "unknown precision"),
        ({"legacy_calibrator": True}, "add --int8"),
        ({"max_batch": 0}, "--max-batch must be 1 or more"),
        (
            {"max_batch": 2, "min_shape": (1, 3, 8, 8), "opt_shape": (1, 3, 8, 8), "max_shape": (2, 3, 8, 8)},
            "the shapes already give the batch",
        ),
    ],
)
def test_option_validation(kw, match):
    with pytest.raises(EdgesegError, match=match):
        EngineOptions(**kw)


def test_parse_shape():
    assert parse_shape("1x3x256x512") == (1, 3, 256, 512)
    assert parse_shape("2,3,8,8") == (2, 3, 8, 8)
    assert parse_shape(None) is None
    for bad in ("1x3x256", "axbxcxd", "0x3x8x8"):
        with pytest.raises(EdgesegError, match="bad shape"):
            parse_shape(bad)


def test_dla_settings(monkeypatch, tmp_path, fp16_onnx, tiny_onnx):
    trt = install_trt(monkeypatch, "10.3.0", FakeGpu(name="Orin (fake)", dla_cores=2))
    r = build_engine(fp16_onnx, tmp_path / "a.engine", EngineOptions(precision="fp16", dla_core=1))
    assert (
        r.plan.builder_flags == ["FP16", "GPU_FALLBACK"]  # weakly typed before 11 (see below)
        and r.info["dla_core"] == 1
        and r.info["gpu_fallback"] is True
    )
    with pytest.raises(EdgesegError, match="--dla-core 2 requested but this device has 2 DLA core"):
        build_engine(fp16_onnx, tmp_path / "b.engine", EngineOptions(precision="fp16", dla_core=2))
    # FP32 graph on DLA without GPU fallback: TensorRT's build fails; we relay its message in one line
    with pytest.raises(
        EdgesegError, match="TensorRT build failed for tiny.onnx: Some layers cannot run on DLA"
    ):
        build_engine(
            tiny_onnx(),
            tmp_path / "c.engine",
            EngineOptions(dla_core=0, gpu_fallback=False),
        )
    assert "GPU fallback is disabled" in trt.last_build["error"]
    install_trt(monkeypatch, "10.3.0", FakeGpu(name="RTX (fake)", dla_cores=0))
    with pytest.raises(EdgesegError, match="has 0 DLA core"):
        build_engine(fp16_onnx, tmp_path / "d.engine", EngineOptions(precision="fp16", dla_core=0))


def test_workspace_opt_level_and_version_compat(monkeypatch, tmp_path, tiny_onnx):
    trt = install_trt(monkeypatch, "8.6.1")
    opts = EngineOptions(workspace_mib=256, optimization_level=5, version_compatible=True)
    r = build_engine(tiny_onnx(), tmp_path / "a.engine", opts)
    assert ("set_memory_pool_limit", ("WORKSPACE", 256 << 20)) in trt.calls
    assert "VERSION_COMPATIBLE" in r.plan.builder_flags
    assert r.info["builder_optimization_level"] == 5


@pytest.mark.parametrize("version", VERSIONS)
def test_parser_errors_name_the_node(monkeypatch, tmp_path, custom_op_onnx, version):
    install_trt(monkeypatch, version)
    with pytest.raises(EdgesegError) as err:
        build_engine(custom_op_onnx, tmp_path / "a.engine", EngineOptions())
    msg = str(err.value)
    assert "node decoder/upsample_7 (MyFancyUpsample): No importer registered for op: MyFancyUpsample" in msg
    assert "\n" not in msg


def test_sidecar_and_atomic_write(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "10.3.0", FakeGpu(name="Orin (fake)", cc=(8, 7)))
    onnx_path = tiny_onnx()
    engine = tmp_path / "out" / "tiny.fp32.engine"
    build_engine(onnx_path, engine, EngineOptions())
    info = json.loads(sidecar_path(engine).read_text())
    assert info["format"] == "edgeseg-engine/1"
    assert info["tensorrt_version"] == "10.3.0"
    assert info["gpu"]["name"] == "Orin (fake)" and info["gpu"]["compute_capability"] == "8.7"
    assert info["onnx_sha256"] == sha256_file(onnx_path)
    assert info["card"]["classes"] == ["c0", "c1", "c2"] and info["precision"] == "fp32"
    assert sorted(p.name for p in engine.parent.iterdir()) == ["tiny.fp32.engine", "tiny.fp32.engine.json"]


def test_a_rebuild_that_dies_before_its_sidecar_leaves_no_stale_sidecar(monkeypatch, tmp_path, tiny_onnx):
    """The engine and its sidecar are two files: if the process dies between them, the previous build's
    sidecar (its card, DLA core, version compatibility) must not be taken as the new engine's."""
    import edgeseg.atomic

    install_trt(monkeypatch, "10.3.0")
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(tiny_onnx(), engine, EngineOptions())
    assert sidecar_path(engine).exists()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process is stopped right after the engine was written

    monkeypatch.setattr(edgeseg.atomic, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        build_engine(tiny_onnx(num_classes=5, name="other"), engine, EngineOptions(version_compatible=True))
    assert engine.exists() and not sidecar_path(engine).exists()


def test_progress_monitor_reports_phases_and_cancels(monkeypatch):
    import threading

    trt = install_trt(monkeypatch, "10.3.0")
    events = []
    cancel = threading.Event()
    monitor = _make_progress_monitor(
        trt, lambda what, done, total: events.append((what, done, total)), cancel
    )
    assert isinstance(monitor, trt.IProgressMonitor)
    monitor.phase_start("Building engine", None, 2)
    assert monitor.step_complete("Building engine", 0) is True
    monitor.step_complete("Building engine", 1)
    monitor.phase_finish("Building engine")
    assert events == [
        ("Building engine", 0, 2),
        ("Building engine", 1, 2),
        ("Building engine", 2, 2),
        ("Building engine", 2, 2),
    ]
    cancel.set()
    monitor.phase_start("Tactics", "Building engine", 3)
    assert monitor.step_complete("Tactics", 0) is False  # TensorRT abandons the build
    assert events[-2:] == [("  Tactics", 0, 3), ("  Tactics", 1, 3)]  # one label: one bar in the terminal


def test_build_reports_progress_through_the_callback(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "10.3.0")
    events = []
    r = build_engine(
        tiny_onnx(), tmp_path / "a.engine", EngineOptions(), progress=lambda *e: events.append(e)
    )
    assert r.engine.is_file()
    assert events[0] == ("building a.engine (TensorRT 10.3.0)", 0, 0)
    assert len(events) > 1  # the fake's builder phases came through the monitor


# ------------------------------------------------------------------------------ CLI entry point
def test_handoff_without_tensorrt(monkeypatch, tmp_path, tiny_onnx):
    hide_trt(monkeypatch)
    onnx_path = tiny_onnx(size=(16, 16), dynamic=True)
    engine = EngineOptions(  # DLA: one shape per profile (NvInferRuntime.h setDimensions)
        precision="fp16", dla_core=1, timing_cache=tmp_path / "t.cache", workspace_mib=512,
        min_shape=(1, 3, 16, 16), opt_shape=(1, 3, 16, 16), max_shape=(1, 3, 16, 16),
    )  # fmt: skip
    result = build(onnx_path, BuildOptions(target="tensorrt", fp16=True, eval_data="synth:2", engine=engine))
    handoff = result.handoff
    assert result.engine is None and handoff is not None
    report = handoff.to_dict()
    assert report["status"] == "handoff" and report["reason"] == "TensorRT is not installed here"
    assert report["exit_code"] == ExitCode.NEEDS_DEVICE == 4
    ready = handoff.onnx
    assert ready.name == "tiny.fp16.onnx" and inspect_onnx(onnx.load(ready)).fp16_graph  # the one FP16 file
    assert (
        json.loads(dict((p.key, p.value) for p in onnx.load(ready).metadata_props)["edgeseg.precision"])
        == "fp16"
    )
    cmds = handoff.commands
    assert handoff.folder == onnx_path.parent  # what the user copies; every path below is relative to it
    assert set(cmds) == {"edgeseg", "trtexec_8", "trtexec_10", "trtexec_11"}
    assert all(str(tmp_path) not in c for c in cmds.values())
    assert cmds["edgeseg"].startswith("edgeseg build tiny.fp16.onnx --target tensorrt --workspace 512")
    assert "--timing-cache t.cache" in cmds["edgeseg"]
    assert "--fp16" not in cmds["edgeseg"]  # the ready ONNX is already FP16; --fp16 there would convert again
    parts = ("--onnx=tiny.fp16.onnx", "--saveEngine=tiny.fp16-dla1.engine", "--useDLACore=1", "--allowGPUFallback",
             "--memPoolSize=workspace:512", "--timingCacheFile=t.cache", "--minShapes=input:1x3x16x16",
             "--optShapes=input:1x3x16x16", "--maxShapes=input:1x3x16x16")  # fmt: skip
    for key in ("trtexec_8", "trtexec_10", "trtexec_11"):
        assert all(part in cmds[key] for part in parts), key
    # DLA before 11 is weakly typed with --fp16; 11.x has no --fp16/--int8 (removed) and needs no flag
    assert "--fp16" in cmds["trtexec_8"] and "--fp16" in cmds["trtexec_10"]
    assert "--stronglyTyped" not in cmds["trtexec_10"]
    for removed in ("--fp16", "--int8", "--calib", "--best"):
        assert removed not in cmds["trtexec_11"]


@pytest.mark.parametrize(
    ("engine", "want"),
    [
        (
            EngineOptions(precision="fp16"),
            {"trtexec_8": "--fp16", "trtexec_10": "--stronglyTyped", "trtexec_11": ""},
        ),
        (EngineOptions(precision="fp32"), {"trtexec_8": "", "trtexec_10": "", "trtexec_11": ""}),
    ],
)
def test_handoff_commands_are_named_for_their_version(monkeypatch, tmp_path, tiny_onnx, engine, want):
    hide_trt(monkeypatch)
    fp16 = engine.precision == "fp16"
    result = build(
        tiny_onnx(), BuildOptions(target="tensorrt", fp16=fp16, eval_data="synth:2", engine=engine)
    )
    cmds = result.handoff.commands
    for key, flag in want.items():
        assert cmds[key].startswith("trtexec --onnx=") and (flag in cmds[key])
        rest = cmds[key].replace(flag, "") if flag else cmds[key]
        assert not any(f in rest for f in ("--fp16", "--int8", "--stronglyTyped")), key


def test_handoff_for_the_implicit_calibrator_points_at_no_missing_cache(monkeypatch, tmp_path, tiny_onnx):
    """trtexec cannot calibrate: it only reads a cache, which the edgeseg line writes on the device. So
    the hand-off gives the edgeseg line (8.x/10.x) and says why there is no trtexec line."""
    from edgeseg.data.synth import SYNTH_CLASSES

    hide_trt(monkeypatch)
    onnx_path = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48))
    engine = EngineOptions(precision="int8", dla_core=0)  # INT8 on DLA: the implicit path
    result = build(
        onnx_path,
        BuildOptions(target="tensorrt", int8=True, calib_data="synth", calib_images=2, engine=engine),
    )
    cmds = result.handoff.commands
    assert list(cmds) == ["edgeseg"]
    assert (
        cmds["edgeseg"] == "edgeseg build tiny.onnx --target tensorrt --int8 --legacy-calibrator --dla-core 0"
    )
    assert not any("--calib=" in c for c in cmds.values())
    notes = " ".join(result.handoff.notes)
    assert "calibration cache" in notes and "TensorRT 11" in notes


def test_handoff_int8_uses_the_qdq_onnx(monkeypatch, tmp_path, qdq_onnx):
    install_trt(monkeypatch, "10.3.0", FakeGpu(devices=0))  # TensorRT installed, but no GPU
    result = build(qdq_onnx, BuildOptions(target="tensorrt"))  # an annotated ONNX is built as is
    assert result.handoff is not None and result.handoff.reason == "no usable CUDA GPU here"
    assert result.handoff.onnx == qdq_onnx and result.handoff.precision == "int8"
    cmds = result.handoff.commands
    assert "--stronglyTyped" in cmds["trtexec_10"] and "--int8" not in cmds["trtexec_11"]
    assert "--int8 --fp16" in cmds["trtexec_8"]  # FP32 float parts: 8.x reads this file as it is


def test_handoff_for_an_fp16_qdq_file_sends_tensorrt_8_to_the_edgeseg_line(monkeypatch, tmp_path, qdq_onnx):
    from edgeseg.export.fp16 import convert_qdq_fp16

    model = convert_qdq_fp16(onnx.load(qdq_onnx))
    fp16_qdq = tmp_path / "toy.int8.qdq.onnx"
    onnx.save(model, fp16_qdq)
    hide_trt(monkeypatch)
    result = build(fp16_qdq, BuildOptions(target="tensorrt"))
    cmds = result.handoff.commands
    assert "trtexec_8" not in cmds and "--stronglyTyped" in cmds["trtexec_10"]
    assert any("TensorRT 8" in n and "edgeseg" in n for n in result.handoff.notes)


def test_build_makes_the_engine_on_a_device(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "10.3.0")
    onnx_path = tiny_onnx()
    engine = EngineOptions(timing_cache=tmp_path / "t.cache")
    result = build(onnx_path, BuildOptions(target="tensorrt", engine=engine))
    assert result.handoff is None and result.engine.engine.name == "tiny.fp32.engine"
    assert result.engine.engine.is_file() and result.engine.sidecar.is_file()


def test_annotated_onnx_on_the_device_builds_as_is(monkeypatch, tmp_path, qdq_onnx):
    """On the Jetson, `edgeseg build X.int8.qdq.onnx --target tensorrt` must not need --int8 again."""
    install_trt(monkeypatch, "8.6.1")
    result = build(qdq_onnx, BuildOptions(target="tensorrt"))
    assert result.engine.info["precision"] == "int8" and result.engine.info["builder_flags"] == [
        "INT8",
        "FP16",
    ]


def test_plan_is_pure(monkeypatch, tiny_onnx):
    trt = install_trt(monkeypatch, "10.3.0")
    graph = inspect_onnx(onnx.load(tiny_onnx()))
    plan = plan_build(detect(trt), graph, EngineOptions())
    assert plan.to_dict() == {
        "network_flags": [],
        "builder_flags": [],
        "preview_features": [],
        "profiles": 1,
        "notes": [],
    }
    assert trt.calls == []


def test_options_a_version_lacks_are_refused_clearly(monkeypatch, tiny_onnx):
    """JetPack 5.1's TensorRT 8.5 predates VERSION_COMPATIBLE and the optimization level (both 8.6+)."""
    import dataclasses

    trt = install_trt(monkeypatch, "8.6.1")
    older = dataclasses.replace(detect(trt), version="8.5.2", version_compatible=False)
    graph = inspect_onnx(onnx.load(tiny_onnx()))
    with pytest.raises(EdgesegError, match="8.5.2 cannot build version-compatible engines"):
        plan_build(older, graph, EngineOptions(version_compatible=True))


def test_ctrl_c_cancels_the_build_through_the_progress_monitor(monkeypatch, tmp_path, tiny_onnx):
    import os
    import signal

    trt = install_trt(monkeypatch, "10.3.0")
    original = trt.Builder.build_serialized_network

    def interrupted(self, network, config):
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C while TensorRT builds
        return original(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", interrupted)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        build_engine(tiny_onnx(), tmp_path / "a.engine", EngineOptions())
    assert trt.last_build == {"error": "Build cancelled by the progress monitor"}  # TensorRT stopped cleanly
    assert not (tmp_path / "a.engine").exists()
    assert signal.getsignal(signal.SIGINT) is before


def test_corrupt_timing_cache_is_a_clear_error(monkeypatch, tmp_path, tiny_onnx):
    install_trt(monkeypatch, "10.3.0")
    cache = tmp_path / "t.cache"
    cache.write_bytes(b"not a timing cache")
    with pytest.raises(EdgesegError, match="timing cache .* is corrupt or from another TensorRT version"):
        build_engine(tiny_onnx(), tmp_path / "a.engine", EngineOptions(timing_cache=cache))


# ------------------------------------------------------------------------------ issue 14: first contact
def test_timing_cache_from_another_gpu_is_replaced_and_the_sidecar_written(monkeypatch, tmp_path, tiny_onnx):
    """set_timing_cache(cache, False) returns False for another device's cache; the build goes on with a
    fresh cache, says so in one line, and still writes its sidecar."""
    install_trt(monkeypatch, "10.3.0", FakeGpu(name="RTX 4090 (fake)", cc=(8, 9), sm_count=128))
    cache = tmp_path / "timing.cache"
    onnx_path = tiny_onnx()
    build_engine(onnx_path, tmp_path / "desk.engine", EngineOptions(timing_cache=cache))
    foreign = cache.read_bytes()
    trt = install_trt(monkeypatch, "10.3.0", FakeGpu(name="Orin (fake)", cc=(8, 7)))
    engine = tmp_path / "orin.engine"
    events = []
    r = build_engine(
        onnx_path, engine, EngineOptions(timing_cache=cache), progress=lambda *e: events.append(e[0])
    )
    assert engine.is_file() and sidecar_path(engine).is_file()
    assert r.info["timing_cache_reused"] is False
    note = next(n for n in r.info["notes"] if "timing cache" in n)
    assert "another GPU" in note and "\n" not in note and note in events
    assert cache.read_bytes() != foreign  # replaced by this device's cache
    build_engine(onnx_path, tmp_path / "again.engine", EngineOptions(timing_cache=cache))
    assert trt.last_build["timing_cache_misses"] == 0


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_dla_fp16_build_is_weakly_typed_so_its_layers_reach_dla(monkeypatch, tmp_path, fp16_onnx, version):
    """Before TensorRT 11, DLA builds are documented with BuilderFlag.FP16 (strongly typed DLA builds
    only from 11.4.1): a strongly typed network would leave every layer on the GPU."""
    trt = install_trt(monkeypatch, version, FakeGpu(dla_cores=2))
    r = build_engine(fp16_onnx, tmp_path / "a.engine", EngineOptions(precision="fp16", dla_core=1))
    assert "STRONGLY_TYPED" not in r.plan.network_flags
    assert r.plan.builder_flags == ["FP16", "GPU_FALLBACK"]
    assert trt.last_build["dla_layers"] > 0 and r.info["dla_core"] == 1


def test_int8_for_dla_takes_the_implicit_calibrator(monkeypatch, tmp_path, qdq_onnx, tiny_onnx):
    """DLA runs no Q/DQ network before TensorRT 11: a Q/DQ build for DLA is refused with the way out,
    and `edgeseg build --int8 --dla-core N` takes the implicit (calibrator) path, whose layers reach DLA."""
    from edgeseg.data.synth import SYNTH_CLASSES

    trt = install_trt(monkeypatch, "10.3.0", FakeGpu(dla_cores=2))
    with pytest.raises(EdgesegError, match=r"Q/DQ.*DLA.*--legacy-calibrator") as err:
        build_engine(qdq_onnx, tmp_path / "q.engine", EngineOptions(precision="int8", dla_core=0))
    assert "\n" not in str(err.value)
    onnx_path = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48))
    engine = EngineOptions(precision="int8", dla_core=0)
    result = build(
        onnx_path,
        BuildOptions(target="tensorrt", int8=True, calib_data="synth", calib_images=2, engine=engine),
    )
    assert (
        result.engine.info["legacy_calibrator"]
        and result.engine.engine.name == "tiny.int8-legacy-dla0.engine"
    )
    assert trt.last_build["dla_layers"] > 0
    install_trt(monkeypatch, "11.4.0.106", FakeGpu(dla_cores=2))
    with pytest.raises(EdgesegError, match="INT8 on DLA.*TensorRT 11"):
        build_engine(qdq_onnx, tmp_path / "q11.engine", EngineOptions(precision="int8", dla_core=0))


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.3.0"])
def test_legacy_calibrator_on_a_dynamic_onnx_sets_the_calibration_profile(
    monkeypatch, tmp_path, tiny_onnx, version
):
    trt = install_trt(monkeypatch, version)
    dyn = tiny_onnx(size=(32, 48), dynamic=True)
    opts = EngineOptions(precision="int8", legacy_calibrator=True, calibration_batches=_calib_batches)
    build_engine(dyn, tmp_path / "a.engine", opts)
    assert trt.last_build["calibration"] == {"from_cache": False, "batches": 4}
    profile = next(d for w, d in trt.calls if w == "set_calibration_profile")
    assert profile["input"] == ((1, 3, 32, 48),) * 3  # one shape, the batches' (not the batch-4 OPT)
    tuned = next(d for w, d in trt.calls if w == "set_shape")
    assert tuned[2] == (4, 3, 32, 48)  # the optimization profile itself is tuned for four streams
    bad = EngineOptions(
        precision="int8", legacy_calibrator=True, calibration_batches=_calib_batches,
        min_shape=(1, 3, 64, 64), opt_shape=(1, 3, 64, 64), max_shape=(1, 3, 64, 64),
    )  # fmt: skip
    with pytest.raises(EdgesegError, match=r"calibrat.*1x3x32x48.*takes 1x3x64x64 to 1x3x64x64"):
        build_engine(dyn, tmp_path / "b.engine", bad)


def test_legacy_calibrator_frees_its_device_buffers(monkeypatch, tmp_path, tiny_onnx):
    from edgeseg.runtime.cuda_mem import open_cuda

    trt = install_trt(monkeypatch, "8.6.1")
    cuda = open_cuda()
    before = trt.gpu.live()
    opts = EngineOptions(precision="int8", legacy_calibrator=True, calibration_batches=_calib_batches)
    build_engine(tiny_onnx(), tmp_path / "a.engine", opts, cuda=cuda)
    assert trt.gpu.live() == before
    cuda.close()


def test_progress_monitor_is_safe_when_builder_threads_call_it_at_once(monkeypatch, tmp_path, qdq_onnx):
    """TensorRT calls the monitor from several builder threads (NvInfer.h); the progress callback behind
    it (a terminal bar) must still be entered by one thread at a time."""
    import threading
    import time

    install_trt(monkeypatch, "10.3.0")
    inside, overlaps, seen = threading.Lock(), [], []

    def progress(what, done, total, detail=""):
        if not inside.acquire(blocking=False):
            overlaps.append(what)
            return
        try:
            seen.append(what)
            time.sleep(0.02)
        finally:
            inside.release()

    build_engine(qdq_onnx, tmp_path / "a.engine", EngineOptions(precision="int8"), progress=progress)
    assert overlaps == [] and any("Timing layers" in w for w in seen)


def test_handoff_carries_the_dynamic_batch_profile(tiny_onnx):
    """Built on the device later: the edgeseg line repeats --max-batch and every trtexec line gets the
    same min/opt/max, so either way the engine batches as many streams."""
    from edgeseg.export.tensorrt_plan import handoff_commands, profile_shapes

    path = tiny_onnx(size=(32, 48), batch="N")
    graph = inspect_onnx(onnx.load(path))
    options = EngineOptions(max_batch=6)
    profiles = profile_shapes(
        graph,
        options,
        ModelCard.from_metadata_props({p.key: p.value for p in onnx.load(path).metadata_props}),
    )
    commands, _ = handoff_commands(path, path.with_suffix(".engine"), options, profiles, graph)
    assert "--max-batch 6" in commands["edgeseg"]
    for key in ("trtexec_8", "trtexec_10", "trtexec_11"):
        assert (
            "--minShapes=input:1x3x32x48" in commands[key] and "--maxShapes=input:6x3x32x48" in commands[key]
        )
        assert "--optShapes=input:6x3x32x48" in commands[key]
