"""Batched inference for several streams (runtime/multistream.py): how many frames one call may carry
(`plan_batches`, from the backend's `batch_limits`), and the `Batcher` thread that takes the frame
each stream has ready, runs them as one batch and hands each result back to its own stream.

A model whose batch axis is fixed at 1 still runs every stream, one ready frame at a time;
`plan_batches` says so once, with how to export a batched model, and refuses (one line, with the
recipe) a model that cannot run a single frame.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.runtime.backends import Backend
from edgeseg.runtime.streaming.channel import POLL
from edgeseg.runtime.streaming.frame import FrameResult
from edgeseg.runtime.streaming.inference import InferencePort, StreamPorts


@dataclass(frozen=True)
class BatchPlan:
    """How many ready frames one inference call carries, and what the user should know about it."""

    max_batch: int
    model_limits: tuple[int, int | None]
    note: str | None = None  # said once: the model cannot batch every stream


def plan_batches(backend: Backend, streams: int, requested: int | None = None) -> BatchPlan:
    """Batches of up to `streams` frames (or `requested`), within what `backend` accepts."""
    if requested is not None and requested < 1:
        raise EdgesegError(f"max_batch must be at least 1, got {requested}")
    lo, hi = backend.batch_limits
    want = streams if requested is None else min(requested, streams)
    if lo > 1:
        raise EdgesegError(
            f"{backend.path.name} only runs batches of {lo}{'' if hi == lo else f' to {hi}'} frames, so fewer "
            f"ready streams cannot run; {_batched_export_hint(backend, streams)}"
        )
    top = want if hi is None else min(want, hi)
    note = None
    if top < want:
        what = "has a fixed batch of 1" if hi == 1 else f"takes batches of at most {hi}"
        how = "one frame at a time" if hi == 1 else f"in batches of at most {hi}"
        note = (
            f"{backend.path.name} {what}: {streams} streams run {how}; for batched inference "
            f"{_batched_export_hint(backend, want)}"
        )
    return BatchPlan(top, (lo, hi), note)


def _batched_export_hint(backend: Backend, streams: int) -> str:
    card = backend.card
    checkpoint = backend.path.with_suffix(".pt")  # the shipped default model keeps one beside its ONNX
    export = f"edgeseg export {checkpoint if checkpoint.is_file() else card.model} --dynamic"
    if backend.name == "tensorrt":
        if card.dynamic_batch:  # the ONNX has a dynamic batch; the engine's profile stops short
            from edgeseg.artifacts import onnx_beside_engine

            onnx = onnx_beside_engine(backend.path)
            return (
                f"rebuild the engine with a profile for {streams}: edgeseg build "
                f"{onnx.name if onnx else 'MODEL.onnx'} --target tensorrt --max-batch {streams}"
            )
        return f"build the engine from an `{export}` ONNX with --target tensorrt --max-batch {streams}"
    return f"export with a dynamic batch axis: {export}"


class Batcher:
    """The one inference thread of a MultiStream: the only thread that touches the backend.

    Like a Pipeline's worker it keeps up to `backend.max_in_flight` batches submitted and never holds
    a finished batch back waiting for new frames. It takes at most one frame per stream into a batch
    (from each stream's `InferencePort`), and only from a stream whose postprocessing has room for
    the result, so handing results back never blocks."""

    def __init__(
        self,
        backend: Backend,
        ports: Sequence[tuple[str, InferencePort]],
        max_batch: int,
        wake: threading.Event,
    ) -> None:
        """`ports`: each stream's name and port; `wake` is set when any of them has news."""
        self.backend, self.max_batch, self.wake = backend, max_batch, wake
        self.streams = StreamPorts(ports)
        self.sizes: Counter[int] = Counter()  # batch size -> batches run
        self.error: BaseException | None = None
        self._ready: list[tuple[int, FrameResult]] = []  # (lane, frame) taken, not yet submitted

    def run(self) -> None:
        backend = self.backend
        backend.activate()
        try:
            in_flight: deque[tuple[float, list[tuple[int, FrameResult]]]] = deque()  # (submitted at, batch)
            while True:
                if len(in_flight) >= backend.max_in_flight:
                    self._collect(*in_flight.popleft())
                    continue
                self.wake.clear()  # before looking: a frame arriving after the look sets it again
                self._refill()
                if self._ready:
                    in_flight.append(self._submit())
                elif in_flight:  # nothing new to stage: hand on the oldest batch
                    self._collect(*in_flight.popleft())
                elif self.streams.all_ended:
                    break
                else:
                    self.wake.wait(POLL)
        finally:
            backend.deactivate()

    def _refill(self) -> None:
        """Take the frame each stream has ready, starting with a different stream each time."""
        waiting = {i for i, _ in self._ready}
        order, ending = self.streams.rotation(), []
        for i in order:
            item = None if i in waiting else self.streams.take(i, ending)
            if item is not None:
                self._ready.append((i, item))
        for port in ending:
            port.end()
        self.streams.advance(past=order[0])

    def _submit(self) -> tuple[float, list[tuple[int, FrameResult]]]:
        """One batch from the ready frames: the oldest one's input shape, up to `max_batch` frames;
        returned with the time it was submitted."""
        shape = self._ready[0][1].batch.shape  # type: ignore[union-attr]
        chosen = [p for p in self._ready if p[1].batch.shape == shape][: self.max_batch]  # type: ignore[union-attr]
        taken = {i for i, _ in chosen}
        self._ready = [p for p in self._ready if p[0] not in taken]
        arrays = [item.batch for _, item in chosen]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # type: ignore[arg-type]
        submitted = time.perf_counter()
        for _, item in chosen:
            item.batch = None
        self.backend.submit(batch)
        self.sizes[len(chosen)] += 1
        return submitted, chosen

    def _collect(self, submitted: float, chosen: list[tuple[int, FrameResult]]) -> None:
        out = self.backend.result()
        ms = (time.perf_counter() - submitted) * 1000.0
        for k, (i, item) in enumerate(chosen):
            item.raw = out[k : k + 1]
            item.timings["inference"] = ms
            port = self.streams.ports[i]
            if self.streams.returned(i, port.hand_back(item)):
                port.end()
