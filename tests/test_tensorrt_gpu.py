"""Real TensorRT on a real GPU (skipped here: no GPU, no TensorRT libraries). Run on a Jetson or a CUDA
workstation with `pytest -m gpu tests/test_tensorrt_gpu.py`."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.card import ModelCard, default_palette

pytestmark = pytest.mark.gpu


def _skip_without_gpu() -> None:
    from edgeseg.lazy import available
    from edgeseg.runtime.cuda_mem import gpu_info

    if not available("tensorrt"):
        pytest.skip("TensorRT is not installed (the libraries come from NVIDIA's index or JetPack)")
    if gpu_info() is None:
        pytest.skip("no usable CUDA GPU (or no cuda-python/pycuda)")


@pytest.fixture
def small_net(tmp_path):
    """conv3x3(3->16)+ReLU -> conv3x3(16->16)+ReLU -> conv1x1(16->5): a small segmentation head."""
    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "input"
    for i, (cin, cout, k) in enumerate([(3, 16, 3), (16, 16, 3), (16, 5, 1)]):
        w = (rng.normal(size=(cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        b = rng.normal(scale=0.1, size=cout).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = "logits" if i == 2 else f"c{i}"
        nodes.append(
            helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [out], pads=[k // 2] * 4, name=f"conv{i}")
        )
        if i < 2:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            out = f"r{i}"
        prev = out
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5, "H", "W"])
    model = helper.make_model(
        helper.make_graph(nodes, "small", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    card = ModelCard(model="small", classes=[f"c{i}" for i in range(5)], palette=default_palette(5),
                     input_size=(128, 256), dynamic=True)  # fmt: skip
    for k, v in card.to_metadata_props().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    path = tmp_path / "small.onnx"
    onnx.save(model, path)
    return path


def _frames(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.normal(size=(1, 3, 128, 256)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_engine_matches_onnxruntime(tmp_path, small_net, precision):
    _skip_without_gpu()
    from edgeseg.export.fp16 import write_fp16
    from edgeseg.export.tensorrt_build import build_engine
    from edgeseg.export.tensorrt_plan import EngineOptions
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend

    source = small_net if precision == "fp32" else write_fp16(small_net, tmp_path / "small.fp16.onnx")[0]
    engine = tmp_path / f"small.{precision}.engine"
    opts = EngineOptions(precision=precision, timing_cache=tmp_path / "t.cache",
                         min_shape=(1, 3, 64, 128), opt_shape=(1, 3, 128, 256), max_shape=(2, 3, 256, 512))  # fmt: skip
    build_engine(source, engine, opts)
    ref = OnnxRuntimeBackend(small_net)
    with TensorRTBackend(engine) as trt_backend:
        frames = _frames()
        outs = list(trt_backend.run_pipelined(frames))
        agree = np.mean([np.mean(o.argmax(1) == ref.run(f).argmax(1)) for o, f in zip(outs, frames)])
        assert agree >= (0.999 if precision == "fp32" else 0.995), f"argmax agreement {agree:.4f}"
        assert trt_backend.run(np.zeros((2, 3, 64, 128), np.float32)).shape == (2, 5, 64, 128)
