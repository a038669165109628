"""What a run did, typed: `RunReport` (Pipeline.run_report(), MultiStream.run_report(),
OpenRun.report()); `to_dict()` is its JSON form (`edgeseg run --json`, `--report`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.runtime.run_stats import RunStats


@dataclass(frozen=True)
class LabelsMatched:
    """The --labels folder and how many frames found their ground truth there."""

    folder: Path
    matched: int


@dataclass
class RunReport:
    """What a run did: what ran (model, backend, workers, source, outputs), its stats, and with
    several streams one report per stream and how frames were batched. `to_dict()` is the JSON form
    (`edgeseg run --json`, `--report`)."""

    model: dict[str, Any]
    backend: dict[str, Any]
    workers: int
    source: dict[str, Any]
    outputs: list[dict[str, Any]]
    stats: RunStats
    batching: dict[str, Any] | None = None  # several streams
    streams: list[dict[str, Any]] | None = None  # several streams: each one's JSON form
    artifact: Path | None = None
    labels: LabelsMatched | None = None

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
        return [s["source"] for s in self.streams] if self.streams else [self.source]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "backend": self.backend,
            "workers": self.workers,
            "source": self.source,
        }
        if self.batching is not None:
            out["batching"] = self.batching
        if self.streams is not None:
            out["streams"] = self.streams
        out["outputs"] = self.outputs
        out.update(self.stats.to_dict())
        if self.artifact is not None:
            out["artifact"] = str(self.artifact)
        if self.labels is not None:
            out["labels"] = {"folder": str(self.labels.folder), "matched": self.labels.matched}
        return out
