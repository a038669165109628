"""Backend options have one form: a BackendOptions, checked once when made at a public boundary and
handed down whole to load_backend, the loader, every backend constructor and the bench's worker
process (docs/architecture.md, "One owner per rule")."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from pathlib import Path

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.runtime import BackendOptions, RunPlan, Segmenter, stream
from edgeseg.runtime.backends import BackendLoader, load_backend
from edgeseg.runtime.backends.classes import CLASSES, backend_class
from edgeseg.runtime.backends.torch import TorchBackend

FIELDS = {f.name for f in dataclasses.fields(BackendOptions)}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"threads": 0}, "--threads"),
        ({"threads": 1.5}, "--threads"),
        ({"threads": True}, "--threads"),
        ({"streams": -2}, "backend option streams"),
        ({"providers": []}, "--providers"),
        ({"providers": ["CPUExecutionProvider", 3]}, "--providers"),
        ({"device": 0}, "--device"),
        ({"cuda": 1}, "backend option cuda"),
        ({"backend": 2}, "--backend"),
        ({"card": {"classes": ["a"]}}, "backend option card"),
        ({"spin_wait": "no"}, "backend option spin_wait"),
        ({"allow_other_gpu": 1}, "--allow-other-gpu"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_option(changes, named):
    with pytest.raises(EdgesegError) as made:
        BackendOptions(**changes)
    text = str(made.value)
    assert text.startswith(f"{named} must be ") and "\n" not in text
    with pytest.raises(EdgesegError, match=f"^{named} must be "):
        BackendOptions().replace(**changes)  # a variant is checked as it is made


def test_good_values_are_kept_as_given():
    options = BackendOptions(backend="onnxruntime", providers=["CPUExecutionProvider"], threads=2, streams=2)
    assert (options.providers, options.threads, options.streams) == (["CPUExecutionProvider"], 2, 2)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_every_backend_constructor_takes_one_options_object(name):
    """path, options, and keyword-only arguments that are not backend options (the gate's in-memory
    `model`, TensorRT's `check_compat`, a spawn's shared engine)."""
    suffix = {"onnxruntime": ".onnx", "openvino": ".onnx", "tensorrt": ".engine", "torch": ".pt"}[name]
    cls = backend_class(f"model{suffix}", name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params[:2]] == ["path", "options"]
    rest = params[2:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), rest
    assert not {p.name for p in rest} & FIELDS
    assert set(cls.OPTIONS) <= FIELDS


@pytest.mark.parametrize(
    "function", [load_backend, Segmenter.__init__, BackendLoader, TorchBackend.from_model]
)
def test_what_opens_a_model_takes_no_loose_options(function):
    params = inspect.signature(function).parameters.values()
    assert not [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD or p.name in FIELDS]


def test_a_dict_of_options_is_one_line_at_each_boundary(tiny_onnx):
    model, loose = tiny_onnx(), {"threads": 1}
    for opening in (
        lambda: load_backend(model, loose),
        lambda: Segmenter(model, loose),
        lambda: BackendLoader(model, loose),
        lambda: RunPlan(model=model, sources=({"synthetic": 1},), backend_options=loose),
        lambda: next(stream(model, options=loose, synthetic=1)),
    ):
        with pytest.raises(EdgesegError, match="backend options are a BackendOptions, got dict"):
            opening()


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_object_made_at_the_boundary_reaches_the_backend(tiny_onnx, monkeypatch, runtime):
    """Checked once: opening a model makes no other BackendOptions (nothing below rebuilds them from
    loose fields); the backend holds the caller's object itself."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    options = BackendOptions(backend=runtime, threads=1)
    made = []
    check = BackendOptions.__post_init__
    monkeypatch.setattr(BackendOptions, "__post_init__", lambda self: (made.append(self), check(self)))
    with Segmenter(tiny_onnx(), options) as seg:
        assert seg.backend.options is options and seg.backend.name == runtime
    assert made == []


def test_options_given_with_an_open_backend_are_refused(tiny_onnx):
    with Segmenter(tiny_onnx()) as seg, pytest.raises(EdgesegError, match="go to the backend itself"):
        Segmenter(seg.backend, BackendOptions(threads=1))


def test_the_bench_child_gets_the_options_made_in_the_parent(tiny_onnx):
    """Each artifact is measured in a spawned process: its options cross as one pickled object."""
    from edgeseg.bench import Artifact, BenchConfig, options_for

    art = Artifact("ONNX Runtime FP32", Path(tiny_onnx()), "onnxruntime", "fp32")
    options = options_for(art, BenchConfig(threads=1, providers="cpu"))
    assert options == BackendOptions(backend="onnxruntime", threads=1, providers="cpu")
    assert pickle.loads(pickle.dumps(options)) == options
    # --allow-other-gpu reaches the child like run's, eval's and ros2's (bench runs engines too)
    other = options_for(art, BenchConfig(threads=1, allow_other_gpu=True))
    assert other.allow_other_gpu and pickle.loads(pickle.dumps(other)) == other
