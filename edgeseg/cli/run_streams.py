"""`edgeseg run` with several sources: which streams the options ask for, and the per-stream table.
The checks on per-stream outputs are the RunPlan's (runtime/plan.py); the run itself is
`edgeseg.runtime.multistream` (one model, batched inference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.runtime.report import RunReport
    from edgeseg.runtime.run_stats import RunStats

STREAM_OPTIONS = ("camera", "video", "images", "url", "gst", "bag")  # repeatable, in this order


def source_streams(
    synthetic: int,
    synthetic_frames: int,
    *,
    bag_topics: dict[str, str | None] | None = None,
    **repeated: list[Any] | None,
) -> list[dict[str, Any]]:
    """One `open_source` keyword set per stream, from the repeatable source options (cameras first,
    then videos, images, urls, gst, bags, synthetic); none at all means one synthetic stream (the
    default). `bag_topics` (--topic, --labels-topic) go to every bag."""
    topics = {k: v for k, v in (bag_topics or {}).items() if v is not None}
    if topics and not repeated.get("bag"):
        raise EdgesegError("--topic and --labels-topic select topics of a --bag")
    streams = [
        {kind: value, **(topics if kind == "bag" else {})}
        for kind in STREAM_OPTIONS
        for value in repeated.get(kind) or []
    ]
    streams += [{"synthetic": synthetic_frames} for _ in range(synthetic)]
    return streams or [{"synthetic": synthetic_frames}]


def print_streams(report: RunReport) -> None:
    """Per-stream frames, drops, FPS, latency and mIoU under the total, and how frames were batched."""
    from edgeseg.console import console, table

    assert report.streams is not None and report.batching is not None, "a report of several streams"
    rows = [_stream_row(s.name, s.source_kind, s.stats, len(s.stats.gaps)) for s in report.streams]
    gaps = sum(len(s.stats.gaps) for s in report.streams)
    rows.append(_stream_row("total", "", report.stats, gaps))
    headers = ["stream", "source", "captured", "processed", "dropped", "FPS", "p50 ms", "p95 ms", "p99 ms"]
    console.print(table("streams", [*headers, "gaps", "mIoU"], rows))
    b = report.batching
    sizes = ", ".join(f"{n} x {k}" for k, n in sorted(b.sizes.items())) or "none"
    mean = f"{b.mean_batch:.2f}" if b.mean_batch is not None else "-"
    console.print(
        f"[dim]batched inference: {b.batches} batches ({sizes} frames), mean {mean} frames, "
        f"up to {b.max_batch}"
        + (f", {b.in_flight} run side by side" if b.in_flight > 1 else "")
        + "; each stream's FPS and latency count from when every stream was open[/]"
    )


def _stream_row(name: str, kind: str, stats: RunStats, gaps: int) -> list[Any]:
    e2e = stats.latency.summary()
    from edgeseg.metrics import defined

    m = stats.metrics()
    miou = None if m is None else defined(m.miou)  # undefined (NaN): shown as -
    return [name, kind, stats.captured, stats.processed, stats.dropped, stats.fps,
            e2e["p50"], e2e["p95"], e2e["p99"], gaps, miou]  # fmt: skip
