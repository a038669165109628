"""From an artifact and a source to a pipeline, planned the same way for every caller: `edgeseg run`,
the demo, the benchmarks and `stream()`.

    pipe = open_pipeline("model.onnx", open_source(video="drive.mp4"), [VideoSink("out.mp4")])
    stats = pipe.run()

    multi = open_multistream("model.onnx", [open_source(camera=0), open_source(camera=1)])
    stats = multi.run()                       # one model, batched inference, per-stream stats

Callers describe a run with a RunPlan (runtime/plan.py), which opens it through these.
`plan_inference` decides how many inference workers the artifact gets for this kind of source and
how many CPU threads each (runtime/workers.py has the rules); `open_pipeline` opens the model with
that plan and assembles the Pipeline, which then owns the model and closes it when it finishes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from edgeseg.runtime.backends import Backend, BackendLoader, BackendOptions, choose_backend
from edgeseg.runtime.backends.base import given_options
from edgeseg.runtime.multistream import MultiStream, PerStream
from edgeseg.runtime.pipeline import Pipeline
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.sources import Source
from edgeseg.runtime.workers import WorkerPlan, available_cores, plan_workers


@dataclass(frozen=True)
class InferencePlan:
    """How many inference workers, and the loader each worker's backend is opened with."""

    workers: WorkerPlan
    loader: BackendLoader


def splits_threads(artifact: Path, options: BackendOptions) -> bool:
    """Whether the artifact runs where per-worker CPU thread counts apply (ONNX Runtime or OpenVINO on
    the CPU; OpenVINO's workers are streams of one compiled model, each with its share of threads)."""
    backend = options.backend or choose_backend(artifact, options).backend
    if backend == "openvino":
        return (options.device or "cpu").lower() == "cpu"
    if backend != "onnxruntime":
        return False
    from edgeseg.runtime.backends.onnxruntime import resolve_providers

    return resolve_providers(options.providers)[0] == "CPUExecutionProvider"


def plan_inference(
    artifact: str | Path, options: BackendOptions | None = None, *, workers: int | None = None, live: bool
) -> InferencePlan:
    """Workers for `artifact` (None: choose) and each one's backend options (its share of the threads)."""
    options = given_options(options)
    path = Path(artifact)
    plan = plan_workers(
        workers,
        threads=options.threads,
        live=live,
        splits_threads=splits_threads(path, options),
        model_bytes=path.stat().st_size if path.is_file() else 0,
    )
    # a source that sets the pace (camera, --realtime) leaves the backend idle between frames: its
    # threads should sleep then, not spin a core (docs/runtime.md, "An idle pipeline is idle")
    backend = options.backend or choose_backend(path, options).backend
    per_worker = options.replace(
        backend=backend,
        threads=plan.threads,
        spin_wait=options.spin_wait and not plan.paced,
        # OpenVINO: one compiled model, a CPU stream per worker (ONNX Runtime: a session per worker)
        streams=plan.workers if backend == "openvino" and plan.workers > 1 else options.streams,
    )
    return InferencePlan(plan, BackendLoader(path, per_worker))


def share_cores_with(backend: Backend) -> bool:
    """Keep OpenCV to one thread when `backend` infers on the CPU; True if it did.

    Call once, before any streaming, from a process that owns its threads: OpenCV's setting is
    process-wide and must not change while another thread is inside an OpenCV call (its own rule).
    """
    if backend.computes_on_cpu:
        cv2.setNumThreads(1)
        return True
    return False


def open_pipeline(
    model: str | Path | Segmenter,
    source: Source,
    sinks: Sequence[Sink] = (),
    *,
    workers: int | None = None,
    options: BackendOptions | None = None,
    own_process: bool = False,
    **pipeline_options: Any,
) -> Pipeline:
    """A Pipeline streaming `source` through `model` (an artifact path, opened with the planned workers,
    or an open Segmenter whose backend is spawned for extra workers).

    `own_process`: this process owns its threads (a CLI command, a benchmark), so OpenCV may be held to
    one thread beside a CPU backend. `pipeline_options`: labels, max_frames, reconnect, renderer,
    realtime, keep_logits, queue_size, live (see Pipeline).
    """
    live = bool(pipeline_options.get("live") or source.live or pipeline_options.get("realtime"))
    segmenter, owns, count = _open_model(model, options, workers=workers, live=live, own_process=own_process)
    try:
        return Pipeline(segmenter, source, sinks, workers=count, owns_segmenter=owns, **pipeline_options)
    except BaseException:
        if owns:
            segmenter.close()
        raise


def open_multistream(
    model: str | Path | Segmenter,
    sources: Sequence[Source] | Mapping[str, Source],
    sinks: PerStream = None,
    *,
    options: BackendOptions | None = None,
    own_process: bool = False,
    **stream_options: Any,
) -> MultiStream:
    """A MultiStream running every source through one `model` (an artifact path, opened once with
    every thread for one batched inference worker, or an open Segmenter).

    `sinks`: per stream, a function of the stream's name or a {name: [Sink, ...]} mapping.
    `stream_options`: tile, labels, max_batch, max_frames, reconnect, renderer, realtime, keep_logits,
    queue_size, live (see MultiStream and Pipeline)."""
    listed = list(sources.values()) if isinstance(sources, Mapping) else list(sources)
    # paced (the backend waits between frames, so its threads should sleep, not spin) only when every
    # stream sets the pace: one file stream keeps the batcher busy
    paced = bool(stream_options.get("live") or stream_options.get("realtime") or all(s.live for s in listed))
    if not isinstance(model, Segmenter):
        options = cpu_streams(Path(model), given_options(options), len(listed))
        if (options.streams or 1) > 1:
            stream_options.setdefault("max_batch", 1)  # a frame per request, the requests side by side
    segmenter, owns, _ = _open_model(model, options, workers=1, live=paced, own_process=own_process)
    try:
        return MultiStream(segmenter, sources, sinks, owns_segmenter=owns, **stream_options)
    except BaseException:
        if owns:
            segmenter.close()
        raise


def cpu_streams(artifact: Path, options: BackendOptions, sources: int) -> BackendOptions:
    """Several streams on the CPU: one model run by up to one request per core at once (ONNX Runtime:
    one session called from several threads; OpenVINO: the THROUGHPUT hint with a CPU stream per
    request), each with its share of the threads, instead of one request with every thread running
    batches: measured faster on a CPU (docs/runtime.md, "Several streams through one model"), and still
    one copy of the weights. A GPU keeps batching."""
    if sources < 2 or options.streams is not None or not splits_threads(artifact, options):
        return options
    total = options.threads or available_cores()
    requests = max(1, min(sources, total))
    if requests < 2:
        return options
    return options.replace(streams=requests, threads=max(1, total // requests))


def _open_model(
    model: str | Path | Segmenter,
    options: BackendOptions | None,
    *,
    workers: int | None,
    live: bool,
    own_process: bool,
) -> tuple[Segmenter, bool, int]:
    """(segmenter, whether the caller owns it, inference workers) for an artifact or an open Segmenter."""
    if isinstance(model, Segmenter):
        segmenter, owns, count = model, False, workers or 1
    else:
        plan = plan_inference(model, options, workers=workers, live=live)
        segmenter, owns, count = Segmenter(plan.loader), True, plan.workers.workers
    if own_process:
        try:
            share_cores_with(segmenter.backend)
        except BaseException:
            if owns:
                segmenter.close()
            raise
    return segmenter, owns, count
