"""Several streams, batched in one process or one process each (`benchmarks/multistream.py`): total
FPS from the runs' per-frame logs, CPU time per frame from their reports, and the side-by-side table.

Both sides are measured the same way, from `edgeseg run --log` records: a frame's result is ready at
`captured_at + latency_ms`. Separate processes do not start at the same instant (each imports and
loads its model first), and a run that finishes early leaves the others more cores, so the total is
taken over the window in which every stream was running: from the moment the last stream delivered
its first result to the moment the first stream delivered its last one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

STREAM_COLUMNS = [
    "streams",
    "one process FPS",
    "separate FPS",
    "one process / separate",
    "CPU ms/frame one process",
    "CPU ms/frame separate",
    "peak RSS MB one / separate",
    "one process: threads, mean batch",
    "separate: processes x threads",
]


def result_times(records: Iterable[dict[str, Any]]) -> list[float]:
    """When each frame's result was ready (seconds since the epoch), in the log's order."""
    return [r["captured_at"] + r["latency_ms"] / 1000.0 for r in records if r.get("latency_ms") is not None]


def overlap_fps(streams: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Total FPS of several streams while all of them ran, and over the whole run.

    `streams`: each stream's result times. Frames whose result landed inside the window count;
    the window starts at the last stream's first result and ends at the first stream's last one."""
    times = [sorted(t) for t in streams if t]
    if len(times) != len(streams) or not times:
        return {"fps": None, "window_s": 0.0, "frames": 0, "whole_run_fps": None}
    start = max(t[0] for t in times)
    end = min(t[-1] for t in times)
    inside = sum(1 for t in times for x in t if start < x <= end)
    first, last = min(t[0] for t in times), max(t[-1] for t in times)
    whole = sum(len(t) for t in times)
    return {
        "fps": inside / (end - start) if end > start else None,
        "window_s": max(0.0, end - start),
        "frames": inside,
        "whole_run_fps": (whole - 1) / (last - first) if last > first else None,  # after the first result
    }


def cpu_ms_per_frame(reports: Sequence[dict[str, Any]]) -> float | None:
    """CPU time per processed frame over one or more `edgeseg run` reports (processes), every thread
    counted. Unlike FPS it does not depend on how much of a shared machine the runs got."""
    frames = sum(r["frames"]["processed"] for r in reports)
    if not frames or any(not r.get("cpu") for r in reports):
        return None
    return sum(r["cpu"]["process_ms_per_frame"] * r["frames"]["processed"] for r in reports) / frames


def comparison_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per stream count: both totals, their ratio, and what each side ran with."""
    rows = []
    for r in results:
        batched, separate = r["batched"]["fps"], r["separate"]["fps"]
        ratio = batched / separate if batched and separate else None
        mean = r["batched"].get("mean_batch")
        rows.append(
            [
                str(r["streams"]),
                _fmt(batched),
                _fmt(separate),
                _fmt(ratio, 3),
                _fmt(r["batched"].get("cpu_ms_per_frame"), 1),
                _fmt(r["separate"].get("cpu_ms_per_frame"), 1),
                f"{_fmt(r['batched'].get('peak_rss_mb'), 0)} / {_fmt(r['separate'].get('peak_rss_mb'), 0)}",
                f"{r['batched']['threads']}, {_fmt(mean)}",
                f"{r['streams']} x {r['separate']['threads']}",
            ]
        )
    return rows


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
