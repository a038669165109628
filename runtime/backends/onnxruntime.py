"""ONNX Runtime backend: a first-class CPU backend, and CUDA / TensorRT execution providers where the
installed onnxruntime build has them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import card_from_metadata
from edgeseg.errors import EdgesegError, first_line
from edgeseg.runtime.backends.base import (
    Backend,
    BackendOptions,
    card_fitting_graph,
    check_fixed_axes,
    given_options,
)

# ONNX Runtime's WeightBiasQuantization rewrites a Conv's float bias as int32 at input_scale *
# weight_scale. With FP16 scales (the TensorRT-form INT8 file keeps its float parts in FP16, as
# ModelOpt writes it) that product is computed in FP16 and underflows (0.02 * 1e-4 is below FP16's
# normal range), so the bias all but vanishes: the shipped demo model lost 11.6 mIoU points that way
# against 0.18 with it off. TensorRT keeps bias in float, so the gate must not measure this rewrite.
FP16_QDQ_UNSAFE_OPTIMIZERS = ("WeightBiasQuantization",)

_PREFERRED_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def resolve_providers(requested: str | list[str] | None) -> list[str]:
    """'cpu' (default), 'auto' (best available), or an explicit provider list."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested in (None, "cpu"):
        return ["CPUExecutionProvider"]
    if requested == "auto":
        return [p for p in _PREFERRED_PROVIDERS if p in available]
    wanted = [requested] if isinstance(requested, str) else list(requested)
    missing = [p for p in wanted if p not in available]
    if missing:
        raise EdgesegError(f"onnxruntime provider(s) {missing} not available here; available: {available}")
    return wanted


def has_fp16_qdq(source: Path | bytes) -> bool:
    """Whether the graph (a file, or a serialized model) dequantizes with FP16 scales (a Q/DQ graph
    whose float parts are FP16)."""
    import onnx

    if isinstance(source, bytes):
        model = onnx.load_from_string(source)
    else:
        model = onnx.load(str(source), load_external_data=False)  # ORT has read this file already
    fp16 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    return any(
        n.op_type == "DequantizeLinear" and len(n.input) > 1 and n.input[1] in fp16 for n in model.graph.node
    )


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    OPTIONS = ("providers", "threads", "card", "spin_wait", "streams")

    def __init__(
        self,
        path: str | Path,
        options: BackendOptions | None = None,
        *,
        model: bytes | None = None,
        _session: Any = None,
    ) -> None:
        """`model`: the serialized ONNX itself, for a model not written anywhere (the INT8 gate's
        candidates); `path` then only names it. `options.streams` > 1: that many threads run this
        model at once (several streams on a CPU, runtime/request_pool.py), each through a `spawn()`
        that shares this session (one copy of the weights; ONNX Runtime's `Run` may be called from
        several threads at once), each Run on its calling thread with `threads` intra-op threads."""
        import onnxruntime as ort

        self.path = Path(path)
        self._model = model
        self.options = options = given_options(options)
        threads, spin_wait, card = options.threads, options.spin_wait, options.card
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        if not spin_wait:
            # fed slower than it runs (a camera, --realtime), the pool's threads would busy-wait
            # between operators and after each frame, burning a core while the pipeline is idle
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.providers = resolve_providers(options.providers)
        if _session is not None:  # a spawn sharing the session (see `shares_session`)
            self.session = _session
            meta = self.session.get_modelmeta().custom_metadata_map
            self.card = card or card_from_metadata(self.path, meta)
        else:
            self.session = self._open_session(opts)
            meta = self.session.get_modelmeta().custom_metadata_map
            self.card = card or card_from_metadata(self.path, meta)
            carried = meta.get("edgeseg.precision")  # the file's own card, whatever `card` overrides
            if carried not in ('"fp32"', '"fp16"') and has_fp16_qdq(self.path if model is None else model):
                self.session = self._open_session(opts, disabled=FP16_QDQ_UNSAFE_OPTIMIZERS)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise EdgesegError(f"{self.path.name} has {len(inputs)} inputs; edgeseg models take one image")
        self.input_name = inputs[0].name
        self.input_shape = inputs[0].shape
        self.card = card_fitting_graph(self.card, self.input_shape)
        output = self.session.get_outputs()[0]
        self.output_name = output.name
        if output.shape and len(output.shape) not in (3, 4):  # known before the first frame
            raise EdgesegError(
                f"{self.path.name}: output {output.name!r} {list(output.shape)} is not a segmentation output "
                "(N x C x H x W logits or N x H x W labels): is it a classifier?"
            )

    def _open_session(self, opts: Any, disabled: tuple[str, ...] = ()) -> Any:
        import onnxruntime as ort

        try:
            return ort.InferenceSession(
                str(self.path) if self._model is None else self._model,
                opts,
                providers=self.providers,
                disabled_optimizers=list(disabled),
            )
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise EdgesegError(f"cannot load ONNX model {self.path}: {ort_reason(exc)}") from None

    @property
    def shares_session(self) -> bool:
        """Whether `spawn()` shares this session (several streams on a CPU) instead of opening another."""
        return bool(self.options.streams and self.options.streams > 1 and self.computes_on_cpu)

    def spawn(self) -> Backend:
        if self.shares_session:
            return OnnxRuntimeBackend(self.path, self.options, model=self._model, _session=self.session)
        if self._model is None:
            return super().spawn()
        # a model in memory: the next worker opens the same bytes
        return OnnxRuntimeBackend(self.path, self.options, model=self._model)

    def check_shape(self, shape: tuple[int, ...]) -> None:
        check_fixed_axes(self.path, self.input_shape, shape)

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    @property
    def batch_limits(self) -> tuple[int, int | None]:
        """A named (dynamic) batch axis takes any batch; a fixed one exactly its size."""
        first = self.input_shape[0] if self.input_shape else 1
        return (first, first) if isinstance(first, int) and first > 0 else (1, None)

    @property
    def computes_on_cpu(self) -> bool:
        return self.session.get_providers()[0] == "CPUExecutionProvider"

    def describe(self) -> dict:
        return {**super().describe(), "providers": self.session.get_providers()}


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : (\S+\.(h|cc|cpp):\d+ .*?\) )?")
_OPSET = re.compile(r"Opset (\d+) is under development.*?till opset (\d+)", re.S)


def ort_reason(exc: BaseException) -> str:
    """ONNX Runtime's reason in a few words: without its error-code prefix and C++ signature, and an
    opset newer than this onnxruntime said as such (its own text is 600 characters)."""
    text = str(exc)
    opset = _OPSET.search(text)
    if opset:
        import onnxruntime as ort

        return (
            f"it uses ONNX opset {opset.group(1)}, and onnxruntime {ort.__version__} runs up to opset "
            f"{opset.group(2)}; export it again with a released opset (edgeseg export --opset 17)"
        )
    reason = _ORT_PREFIX.sub("", first_line(exc)).strip() or first_line(exc)
    return reason if len(reason) <= 300 else reason[:297] + "..."
