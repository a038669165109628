"""The contract every inference backend implements (Polygraphy-style runners: one shape, many engines),
and the loader that opens one later, once per worker thread.

A backend is driven by one thread at a time. The streaming pipeline calls, on each inference thread:

    backend.activate()                 # bind per-thread state (a CUDA context); no-op by default
    backend.submit(batch) ...          # up to `max_in_flight` batches queued (double buffering)
    out = backend.result()             # the oldest submitted batch's output
    backend.deactivate()

`run(batch)` is the plain synchronous call (`submit` + `result` for one batch). Both check the batch
in this base class (`check_batch`, with a backend's `check_shape`) and hand it to `run_impl` /
`submit_impl`, which a backend implements. A second worker gets
its own backend from `spawn()`; backends that can share their weights (one TensorRT engine, several
execution contexts) override it. `batch_limits` says how many frames one call may carry (several
streams through one model batch their ready frames, runtime/multistream.py).
"""

from __future__ import annotations

import abc
import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeseg.card import MAX_INPUT_SIDE, MIN_INPUT_SIDE, NATIVE, ModelCard
from edgeseg.defaults import MAX_THREADS
from edgeseg.errors import EdgesegError
from edgeseg.runtime.backends.choice import choose_backend
from edgeseg.runtime.backends.classes import backend_class


@dataclass(frozen=True)
class BackendOptions:
    """How to open an artifact: the one form backend options take, from each public boundary (the CLI,
    RunPlan, `Segmenter`, `stream()`) down to every backend constructor and worker. Checked once, when
    made (`dataclasses.replace` makes a variant and checks it again): each field's type and range. Which
    names exist and what this machine has (a backend, a provider, a device, a CUDA binding) is checked
    where the artifact opens (`backend_class`, then the backend). Each backend reads the fields it names
    in `Backend.OPTIONS`."""

    backend: str | None = None  # which runtime runs the file (None: the rule in backends.choose_backend)
    providers: str | list[str] | None = "cpu"  # ONNX Runtime: cpu, auto, or provider names
    threads: int | None = None  # CPU backends: intra-op threads (None: the library's default)
    device: str | None = "cpu"  # PyTorch: cpu, cuda, cuda:N, auto; OpenVINO: cpu, gpu, npu, auto
    # CPU requests run at once on one copy of the model, each by its own thread through a spawn() that
    # shares it (OpenVINO: CPU streams of one compiled model, the throughput hint; ONNX Runtime: one session)
    streams: int | None = None
    cuda: str | None = None  # TensorRT: CUDA binding (cuda-python or pycuda; None: the first found)
    card: ModelCard | None = None  # overrides the card the artifact carries (files made elsewhere)
    spin_wait: bool = True  # ONNX Runtime: threads spin between operators (False: sleep; paced sources)
    allow_other_gpu: bool = False  # TensorRT: run an engine built on another module of the same GPU family
    # the inference size of a net with dynamic height and width: (h, w) resizes every frame to it,
    # "native" runs each at its own size; None: the size its card states (edgeseg.preprocess.
    # at_inference_size, applied to the card when the artifact opens). `--input-size` / `--native-size`
    input_size: tuple[int, int] | str | None = None

    def __post_init__(self) -> None:
        providers = [self.providers] if isinstance(self.providers, str) else self.providers
        if providers is not None and (
            not isinstance(providers, (list, tuple))
            or not providers
            or not all(isinstance(p, str) and p for p in providers)
        ):
            raise EdgesegError(
                f"{_said('providers')} must be cpu, auto or provider names, got {self.providers!r}"
            )
        for name in ("threads", "streams"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise EdgesegError(f"{_said(name)} must be a whole number, got {value!r}")
            if value < 1:
                raise EdgesegError(f"{_said(name)} must be at least 1, got {value}")
            if value > MAX_THREADS:
                raise EdgesegError(f"{_said(name)} must be at most {MAX_THREADS}, got {value}")
        for name in ("backend", "device", "cuda"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise EdgesegError(f"{_said(name)} must be a name, got {value!r}")
        size = self.input_size
        if isinstance(size, list):
            object.__setattr__(self, "input_size", size := tuple(size))  # JSON gives lists
        if (
            size is not None
            and size != NATIVE
            and not (
                isinstance(size, tuple)
                and len(size) == 2
                and all(isinstance(v, Integral) and not isinstance(v, bool) for v in size)
                and all(MIN_INPUT_SIDE <= v <= MAX_INPUT_SIDE for v in size)
            )
        ):
            raise EdgesegError(
                f"{_said('input_size')} must be (height, width) with sides {MIN_INPUT_SIDE}..{MAX_INPUT_SIDE} "
                f"or {NATIVE!r}, got {size!r}"
            )
        if self.card is not None and not isinstance(self.card, ModelCard):
            raise EdgesegError(f"{_said('card')} must be a ModelCard, got {type(self.card).__name__}")
        for name in ("spin_wait", "allow_other_gpu"):
            if not isinstance(getattr(self, name), bool):
                raise EdgesegError(f"{_said(name)} must be True or False, got {getattr(self, name)!r}")

    def replace(self, **changes: Any) -> BackendOptions:
        return dataclasses.replace(self, **changes)


_FLAGS = (
    "backend",
    "providers",
    "threads",
    "device",
    "allow_other_gpu",
    "input_size",
)  # the fields commands take as options


def _said(field: str) -> str:
    """A field as the user gave it: its command-line option where commands have one (`--threads`, as
    `edgeseg run` said before the check moved here), else the field's name."""
    return f"--{field.replace('_', '-')}" if field in _FLAGS else f"backend option {field}"


def given_options(options: BackendOptions | None) -> BackendOptions:
    """`options` as given (None: the defaults). Anything else, a dict of them included, is one clear
    line: backend options have one form, so nothing below a public boundary reads loose fields."""
    if options is None:
        return BackendOptions()
    if not isinstance(options, BackendOptions):
        raise EdgesegError(
            f"backend options are a BackendOptions, got {type(options).__name__} "
            "(edgeseg.runtime.BackendOptions(threads=2, ...))"
        )
    return options


class Backend(abc.ABC):
    """Runs a preprocessed NCHW float32 batch and returns the raw network output.

    Output is logits (N x C x H x W, float) or labels (N x H x W, integer) according to
    `card.output`; turning it into class maps is the Segmenter's job.
    """

    name: str = "backend"
    OPTIONS: ClassVar[tuple[str, ...]] = ()  # the BackendOptions fields this backend takes
    max_in_flight: int = 1  # batches `submit` accepts before `result` must be called
    path: Path
    card: ModelCard
    options: BackendOptions = BackendOptions()

    # --- per-thread binding ------------------------------------------------------------------------
    def activate(self) -> None:  # noqa: B027 - optional hook
        """Bind per-thread state (a CUDA context) to the calling thread, before it submits work."""

    def deactivate(self) -> None:  # noqa: B027 - optional hook
        """Undo `activate` on the calling thread."""

    # --- inference ---------------------------------------------------------------------------------
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Infer one NCHW float32 batch (contiguous) and wait for its output; the batch is checked here,
        once for every backend, then run by `run_impl` (Polygraphy's infer() -> infer_impl())."""
        self.check_batch(batch)
        return self.run_impl(batch)

    def submit(self, batch: np.ndarray) -> None:
        """Queue `batch` (checked as in `run`); synchronous backends run it now and keep the output for
        `result()`."""
        self.check_batch(batch)
        self.submit_impl(batch)

    def check_batch(self, batch: np.ndarray) -> None:
        """One clear line for a batch this backend cannot run: not N x 3 x H x W, or (`check_shape`) a
        shape the model's fixed axes or profile do not take."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise EdgesegError(f"expected an N x 3 x H x W batch, got {batch.shape}")
        self.check_shape(tuple(int(d) for d in batch.shape))

    def check_shape(self, shape: tuple[int, ...]) -> None:  # noqa: B027 - optional hook
        """Refuse an N x 3 x H x W shape the model cannot take (fixed axes, a profile's range)."""

    @abc.abstractmethod
    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        """Infer one checked batch and wait for its output."""

    def submit_impl(self, batch: np.ndarray) -> None:
        """Queue one checked batch; by default run it now and keep the output for `result()`."""
        if len(self._outputs) >= self.max_in_flight:
            raise EdgesegError(f"{self.max_in_flight} batch(es) already in flight; call result() first")
        self._outputs.append(self.run_impl(batch))

    def result(self) -> np.ndarray:
        """The output of the oldest submitted batch."""
        if not self._outputs:
            raise EdgesegError("result() called with nothing submitted")
        return self._outputs.popleft()

    @property
    def batch_limits(self) -> tuple[int, int | None]:
        """Smallest and largest batch `run` accepts (None: no upper bound). A backend that does not
        know says (1, 1): frames then go one at a time, which every model accepts."""
        return (1, 1)

    @property
    def _outputs(self) -> deque[np.ndarray]:
        outputs = self.__dict__.get("_sync_outputs")
        if outputs is None:
            outputs = self.__dict__["_sync_outputs"] = deque()
        return outputs

    # --- more workers ------------------------------------------------------------------------------
    @property
    def loader(self) -> BackendLoader:
        """How to open this backend again (same artifact, same runtime, same options)."""
        return BackendLoader(self.path, self.options.replace(backend=self.name))

    def spawn(self) -> Backend:
        """Another backend on the same artifact for another inference thread."""
        return self.loader()

    # --- housekeeping ------------------------------------------------------------------------------
    @property
    def computes_on_cpu(self) -> bool:
        """True when inference itself keeps the CPU cores busy (the pipeline then keeps OpenCV to one
        thread, so decoding and drawing do not fight the backend's threads for the same cores)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release device memory, sessions, streams."""

    def describe(self) -> dict:
        """What ran: backend, device/provider, precision; recorded in reports and benchmarks."""
        return {"backend": self.name, "artifact": str(self.path), "precision": self.card.precision}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_fixed_axes(path: Path, declared: Sequence[Any], shape: tuple[int, ...]) -> None:
    """Refuse a shape that differs from an ONNX input's fixed axes (named axes take any size): the one
    wording for every backend that reads an ONNX graph."""
    for axis, (want, got) in enumerate(zip(declared, shape)):
        if isinstance(want, int) and want != got:
            raise EdgesegError(
                f"{path.name} expects input shape {list(declared)}, got {list(shape)} "
                f"(axis {axis}); export with --dynamic (batch) or another --height/--width"
            )


def card_fitting_graph(card: ModelCard, input_shape: list[Any]) -> ModelCard:
    """`card` as the graph allows: a card that calls height and width dynamic on a graph whose H and W
    are fixed (cards written before edgeseg kept the batch axis and the spatial axes apart marked a
    file with a dynamic batch alone `dynamic`) runs frames resized to the graph's size, not padded."""
    hw = input_shape[2:] if len(input_shape) == 4 else []
    if card.dynamic and len(hw) == 2 and all(isinstance(d, int) and d > 0 for d in hw):
        first = input_shape[0]
        return card.replace(
            dynamic=False,
            native_size=False,
            input_size=(hw[0], hw[1]),
            dynamic_batch=not isinstance(first, int) or first < 1,
        )
    return card


@dataclass(frozen=True)
class BackendLoader:
    """A backend not opened yet: the artifact and its options, opened when called (once per worker)."""

    artifact: Path
    options: BackendOptions = BackendOptions()

    def __post_init__(self) -> None:
        given_options(self.options)

    def __call__(self) -> Backend:
        path = Path(self.artifact)
        if not path.exists():
            raise EdgesegError(f"artifact not found: {path}")
        if path.is_dir():
            raise EdgesegError(f"expected a model file (.onnx, .engine, .pt), got a directory: {path}")
        if path.stat().st_size == 0:
            raise EdgesegError(f"{path} is empty (0 bytes): not a model file (an interrupted copy?)")
        backend = self.options.backend or choose_backend(path, self.options).backend
        refuse_an_unheeded_device(path, backend, self.options.device)
        return backend_class(path, backend)(path, sized(path, self.options))


def refuse_an_unheeded_device(path: Path, backend: str, device: str | None) -> None:
    """ONNX Runtime picks its hardware by --providers, not --device: a GPU asked for with --device
    would otherwise run on the CPU with only the report's runtime line to say so."""
    if backend == "onnxruntime" and str(device or "cpu").lower() not in ("cpu", "auto"):
        raise EdgesegError(
            f"--device {device} does not apply to {path.name}, which runs on ONNX Runtime: it takes "
            "--providers CUDAExecutionProvider (or auto) for a GPU, or build a TensorRT engine (edgeseg build); "
            "--device picks the hardware of PyTorch checkpoints and OpenVINO"
        )


def sized(path: Path, options: BackendOptions) -> BackendOptions:
    """`options` with the inference size they ask for applied to the card the artifact opens with (the
    one place `input_size` becomes a card: every backend, and every worker it spawns, runs at it)."""
    if options.input_size is None:
        return options
    from edgeseg.artifacts import read_card
    from edgeseg.preprocess import at_inference_size

    card = at_inference_size(options.card or read_card(path), options.input_size)
    return options.replace(card=card, input_size=None)
