"""Several streams through one model: total FPS of N streams in one `edgeseg run` process vs N
separate `edgeseg run` processes on the same cores, for N = 1, 2, 4, side by side.

    python benchmarks/multistream.py [--model M.onnx] [--streams 1 2 4] [--frames 100] [--rounds 1]
                                     [--source synthetic|video] [--backend onnxruntime|openvino]

- One process: `edgeseg run --synthetic x N` (or the clip N times). On a CPU its streams share one
  model with a request per core, each driven by its own thread, a frame each (runtime/request_pool.py);
  on a GPU they are batched. Separate: N processes started together, `--threads max(1, CORES // N)`
  each, so together they ask for no more threads than there are cores (the script prints what was
  used); with a share of the cores OpenVINO does not pin its threads (before, every separate process
  pinned its inference thread to core 0: `pins_threads` in runtime/backends/openvino.py).
- `--source video` decodes a generated clip (written once) instead of rendering every frame: the
  synthetic source costs about 20 ms of CPU per frame, which hides the inference side.
- Every process writes its per-frame log; both sides' total FPS is counted over the window in which
  every stream was running (edgeseg/benchmarking/streams.py says why), so the separate processes'
  staggered start-up does not count against them. Peak RSS comes from GNU time where installed.
- Model: the shipped default checkpoint exported with `edgeseg export --dynamic` (a dynamic batch)
  into a temporary workspace, unless --model is given; both sides run the same file.
- With N = 1 both sides run the same command, so that row shows the run-to-run noise.
- `--rounds R` interleaves the two sides R times per N and reports the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeseg.benchmarking.streams import (
    STREAM_COLUMNS,
    comparison_rows,
    cpu_ms_per_frame,
    overlap_fps,
    result_times,
)
from edgeseg.runtime.workers import available_cores

EDGESEG = [sys.executable, "-m", "edgeseg"]


def export_default(workdir: Path) -> Path:
    """The shipped checkpoint as a dynamic-batch ONNX (needs torch; takes under a minute)."""
    from edgeseg.defaults import default_model_path

    print("exporting the shipped default model with --dynamic ...", flush=True)
    cmd = [*EDGESEG, "export", str(default_model_path("pt")), "--dynamic", "--name", "default-dynamic"]
    subprocess.run([*cmd, "--workdir", str(workdir), "--json"], check=True, stdout=subprocess.DEVNULL)
    return workdir / "default-dynamic" / "default-dynamic.onnx"


def _read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def make_clip(tmp: Path, frames: int, size: tuple[int, int]) -> Path:
    """A generated street video, written once: a file source costs decoding only, where the synthetic
    source renders every frame (about 20 ms of CPU each), which hides the inference side."""
    out = tmp / "clip"
    cmd = [*EDGESEG, "data", "synth", str(out), "--video", "--frames", str(frames)]
    cmd += ["--height", str(size[0]), "--width", str(size[1])]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return next(out.glob("*.mp4"))


def timed(cmd: list[str], rss_file: Path) -> list[str]:
    """`cmd` under GNU time, which writes the process's peak RSS (KB) to `rss_file` (where installed)."""
    return (
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd] if Path("/usr/bin/time").is_file() else cmd
    )


def peak_rss_mb(rss_file: Path) -> float | None:
    try:
        return int(rss_file.read_text().split()[-1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None


def source_args(clip: Path | None, n: int) -> list[str]:
    return [*(["--video", str(clip)] if clip else ["--synthetic"])] * n


def run_batched(
    model: Path, n: int, frames: int, threads: int, tmp: Path, clip: Path | None = None, extra: tuple = ()
) -> dict[str, Any]:
    """One process, N streams through one model."""
    logs = tmp / "batched"
    logs.mkdir(exist_ok=True)
    for old in logs.glob("*.jsonl"):
        old.unlink()
    log = logs / ("f_{stream}.jsonl" if n > 1 else "f.jsonl")
    cmd = [*EDGESEG, "run", "--model", str(model), *source_args(clip, n), "--frames", str(frames)]
    cmd += ["--threads", str(threads), "--log", str(log), "--json", *extra]
    out = subprocess.run(timed(cmd, tmp / "batched.rss"), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"batched run failed ({out.returncode}): {out.stderr.strip()}")
    report = json.loads(out.stdout)
    streams = [result_times(_read_log(p)) for p in sorted(logs.glob("*.jsonl"))]
    batching = report.get("batching") or {}
    return {
        **overlap_fps(streams),
        "threads": threads,
        "mean_batch": batching.get("mean_batch", 1.0),
        "backend": report.get("backend", {}),
        "peak_rss_mb": peak_rss_mb(tmp / "batched.rss"),
        "note": batching.get("note"),
        "processed": report["frames"]["processed"],
        "cpu_ms_per_frame": cpu_ms_per_frame([report]),
    }


def run_separate(
    model: Path, n: int, frames: int, threads: int, tmp: Path, clip: Path | None = None, extra: tuple = ()
) -> dict[str, Any]:
    """N processes started together, one stream each."""
    logs = tmp / "separate"
    logs.mkdir(exist_ok=True)
    for old in logs.glob("*.jsonl"):
        old.unlink()
    procs = []
    for k in range(n):
        cmd = [*EDGESEG, "run", "--model", str(model), *source_args(clip, 1), "--frames", str(frames)]
        cmd += ["--threads", str(threads), "--log", str(logs / f"f{k}.jsonl"), "--json", *extra]
        rss = timed(cmd, tmp / f"separate{k}.rss")
        procs.append(subprocess.Popen(rss, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    reports = []
    for proc in procs:
        stdout, stderr = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"separate run failed ({proc.returncode}): {stderr.strip()}")
        reports.append(json.loads(stdout))
    streams = [result_times(_read_log(p)) for p in sorted(logs.glob("*.jsonl"))]
    return {
        **overlap_fps(streams),
        "threads": threads,
        "processed": sum(r["frames"]["processed"] for r in reports),
        "cpu_ms_per_frame": cpu_ms_per_frame(reports),
        "peak_rss_mb": sum(peak_rss_mb(tmp / f"separate{k}.rss") or 0.0 for k in range(n)) or None,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [r["fps"] for r in runs if r["fps"] is not None]
    return {
        **runs[-1],
        "fps": statistics.median(measured) if measured else None,
        "rounds": [r["fps"] for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="artifact [the shipped default model, exported --dynamic]")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4], help="stream counts N [1 2 4]")
    ap.add_argument("--frames", type=int, default=100, help="synthetic frames per stream [100]")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds per N; medians reported [1]")
    ap.add_argument("--cores", type=int, default=None, help="cores to share [all this process may use]")
    ap.add_argument("--source", choices=("synthetic", "video"), default="synthetic",
                    help="synthetic: the generator, rendered per frame; video: a generated clip, decoded")  # fmt: skip
    ap.add_argument("--backend", help="--backend for every run [the CPU rule's choice]")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    extra = ("--backend", args.backend) if args.backend else ()
    cores = args.cores or available_cores()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="edgeseg-multistream-") as tmp_dir:
        tmp = Path(tmp_dir)
        model = args.model or export_default(tmp / "work")
        clip = None
        if args.source == "video":
            from edgeseg.artifacts import read_card

            clip = make_clip(tmp, args.frames, tuple(read_card(model).input_size))
        results = []
        for n in args.streams:
            separate_threads = max(1, cores // n)
            batched_runs, separate_runs = [], []
            for round_ in range(args.rounds):
                if not args.json:
                    print(
                        f"N={n} round {round_ + 1}/{args.rounds}: one process, then {n} separate ...",
                        flush=True,
                    )
                batched_runs.append(run_batched(model, n, args.frames, cores, tmp, clip, extra))
                separate_runs.append(run_separate(model, n, args.frames, separate_threads, tmp, clip, extra))
            results.append(
                {"streams": n, "batched": _median(batched_runs), "separate": _median(separate_runs)}
            )
    summary = {
        "model": str(args.model or "shipped default checkpoint, exported --dynamic"),
        "cores": cores,
        "frames_per_stream": args.frames,
        "source": args.source,
        "backend": args.backend or "the CPU rule's choice",
        "rounds": args.rounds,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        "results": results,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    rows = comparison_rows(results)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(STREAM_COLUMNS)]
    print()
    print("  ".join(c.ljust(w) for c, w in zip(STREAM_COLUMNS, widths)))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    print(
        f"\nmodel: {summary['model']}; {cores} cores; {args.frames} {args.source} frames per stream; "
        f"runtime: {results[0]['batched'].get('backend', {}).get('backend')}; "
        f"{args.rounds} round(s), medians; load average before {_load(load_before)}, after "
        f"{_load(summary['loadavg_after'])}"
    )
    print(
        "FPS: results per second of all streams together, while every stream was running. One process: "
        f"one model, {cores} threads (on a CPU a request per core, a frame each; batches on a GPU). Separate: N processes with max(1, {cores} // N) "
        "threads each (N = 1: two single-threaded inference workers, the single-stream default). "
        "CPU ms/frame: process CPU time (every thread) per processed frame, all processes together; "
        "it does not depend on the share of a busy machine the runs got (N processes get N shares of "
        "the scheduler against other load, one process one), FPS does."
    )
    for r in results:
        if r["batched"].get("note"):
            print(f"note: {r['batched']['note']}")
            break
    if any(r[side]["fps"] is None for r in results for side in ("batched", "separate")):
        print(
            "-: no stretch of time in which every stream of that run was running (the runs were shorter "
            "than the processes' staggered start-up); give more --frames"
        )
    return 0


def _load(values: Any) -> str:
    return " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
