"""What a run did, typed: `RunReport` (Pipeline.run_report(), MultiStream.run_report(),
OpenRun.report(), the ROS 2 node's `run_node`); `to_dict()` is its JSON form (`edgeseg run --json`,
`--report`). Callers read and set its fields; nothing edits the JSON form by key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.preprocess import inference_size
from edgeseg.runtime.backends.choice import Choice
from edgeseg.runtime.run_stats import RunStats


@dataclass(frozen=True)
class LabelsMatched:
    """The --labels folder and how many frames found their ground truth there."""

    folder: Path
    matched: int


@dataclass(frozen=True)
class Batching:
    """How several streams' frames were batched: the limit and why, the sizes run."""

    max_batch: int
    in_flight: int  # requests run side by side (CPU: a core each), or the backend's batches in flight
    model_batch: tuple[int, int | None]
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches
    note: str | None = None

    @property
    def batches(self) -> int:
        return sum(self.sizes.values())

    @property
    def mean_batch(self) -> float | None:
        frames = sum(k * v for k, v in self.sizes.items())
        return frames / self.batches if self.batches else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch,
            "in_flight": self.in_flight,
            "model_batch": list(self.model_batch),
            "batches": self.batches,
            "mean_batch": self.mean_batch,
            "sizes": {str(k): v for k, v in sorted(self.sizes.items())},
            "note": self.note,
        }


@dataclass(frozen=True)
class StreamReport:
    """One of several streams: its name, source, outputs and stats (the model and CPU are the run's)."""

    name: str
    source: dict[str, Any]
    outputs: list[dict[str, Any]]
    stats: RunStats

    @property
    def source_kind(self) -> str:
        return self.source["kind"]

    def to_dict(self) -> dict[str, Any]:
        stats = self.stats.to_dict()
        stats.pop("cpu")  # the process's CPU is the run's, not one stream's
        return {"stream": self.name, "source": self.source, "outputs": self.outputs, **stats}


@dataclass(frozen=True)
class NodeEnd:
    """How the ROS 2 node's run ended (`end`, `frames`, `timeout`, `interrupt`, `shutdown`) and the
    topic it read (its resolved name)."""

    stopped_by: str
    topic: str


@dataclass
class RunReport:
    """What a run did: what ran (model, backend, workers, source, outputs), its stats, and with
    several streams one report per stream and how frames were batched. `to_dict()` is the JSON form
    (`edgeseg run --json`, `--report`)."""

    card: ModelCard  # the model that ran, at the size frames ran at
    backend: dict[str, Any]  # the backend's own description (`Backend.describe()`)
    workers: int
    source: dict[str, Any]
    outputs: list[dict[str, Any]]
    stats: RunStats
    batching: Batching | None = None  # several streams
    streams: list[StreamReport] | None = None  # several streams
    node: NodeEnd | None = None  # the ROS 2 node
    artifact: Path | None = None
    labels: LabelsMatched | None = None
    runtime: Choice | None = None  # which runtime ran the artifact and why

    @property
    def model(self) -> dict[str, Any]:
        """The model that ran, as the JSON form says it."""
        card = self.card
        return {
            "name": card.model,
            "precision": card.precision,
            "input_size": list(card.input_size),
            "dynamic": card.dynamic,
            "dynamic_batch": card.dynamic_batch,
            "inference_size": inference_size(card),
            "classes": len(card.classes),
        }

    @property
    def backend_name(self) -> str | None:
        return self.backend.get("backend")

    @property
    def source_kind(self) -> str:
        return self.source["kind"]

    @property
    def labelled(self) -> bool:
        """Whether any source brought ground truth of its own (a bag's --labels-topic that matched)."""
        return any(s.get("labelled") for s in self.sources)

    @property
    def exit_code(self) -> int:
        return int(self.stats.exit_code)

    @property
    def ended(self) -> str:
        """Why the run ended, in words."""
        return self.stats.ended()["reason"]

    @property
    def sources(self) -> list[dict[str, Any]]:
        """Each stream's source as described in the report."""
        return [s.source for s in self.streams] if self.streams else [self.source]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "backend": self.backend,
            "workers": self.workers,
            "source": self.source,
        }
        if self.batching is not None:
            out["batching"] = self.batching.to_dict()
        if self.streams is not None:
            out["streams"] = [s.to_dict() for s in self.streams]
        out["outputs"] = self.outputs
        out.update(self.stats.to_dict())
        if self.node is not None:
            out.update(stopped_by=self.node.stopped_by, topic=self.node.topic)
        if self.artifact is not None:
            out["artifact"] = str(self.artifact)
        if self.labels is not None:
            out["labels"] = {"folder": str(self.labels.folder), "matched": self.labels.matched}
        if self.runtime is not None:
            out["runtime"] = {"backend": self.runtime.backend, "why": self.runtime.reason}
        return out
