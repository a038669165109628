"""Soak: stream 10,000 frames through the full pipeline and check memory stays flat.

Streams a looping video of generated street scenes (decode, preprocess, inference, argmax, overlay
rendering, per-frame JSONL log) and samples the process RSS with psutil every `--every` frames.
Memory is "stable" when the RSS at the end is within a few MB of the RSS after warm-up; the
latency reservoirs and the confusion matrix are fixed-size by design.

    python benchmarks/soak.py [--model M.onnx] [--frames 10000] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgeseg.data.synth import write_video
from edgeseg.runtime import BackendOptions, Segmenter
from edgeseg.runtime.plan import Outputs, RunPlan, View
from edgeseg.runtime.sources import VideoSource


def main(argv: list[str] | None = None) -> int:
    import psutil

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="artifact [the shipped default model]")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=1000, help="RSS sample interval in frames")
    ap.add_argument("--warmup", type=int, default=50, help="frames before the start RSS is taken")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    if args.model is None:
        from edgeseg.defaults import default_model_path

        args.model = default_model_path("onnx")
    proc = psutil.Process()
    mb = 1024 * 1024
    rss_before_model = proc.memory_info().rss / mb
    seg = Segmenter(args.model, BackendOptions(threads=args.threads or None))
    card = seg.card
    size = tuple(card.input_size)
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(Path(tmp) / "loop.mp4", 60, *size, seed=11)[0]
        plan = RunPlan(  # drawn as --save would draw it, with the JSONL log of --log
            model=seg,
            sources=(VideoSource(video, loop=True),),
            outputs=Outputs(log=Path(tmp) / "frames.jsonl"),
            view=View(mode="overlay", legend=True, draw=True),
            max_frames=args.frames,
        )
        run = plan.open()
        pipe = run.driver
        for result in pipe.stream():
            n = result.index + 1
            if n == args.warmup or n % args.every == 0 or n == args.frames:
                samples.append((n, proc.memory_info().rss / mb))
                if not args.json:
                    print(
                        f"frame {n:6d}  RSS {samples[-1][1]:8.1f} MB  {pipe.stats.status_line()}", flush=True
                    )
        report = run.report().to_dict()
    start = next(r for n, r in samples if n >= args.warmup)
    end = samples[-1][1]
    result = {
        "model": str(args.model),
        "frames": report["frames"]["processed"],
        "frame_size": list(size),
        "fps": report["fps"],
        "latency_ms": report["latency_ms"]["capture_to_result"],
        "rss_mb_before_model": rss_before_model,
        "rss_mb_start": start,
        "rss_mb_end": end,
        "rss_mb_growth": end - start,
        "rss_samples": samples,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['frames']} frames at {result['fps']:.1f} FPS; RSS start {start:.1f} MB "
            f"(after {args.warmup} frames), end {end:.1f} MB, growth {end - start:+.1f} MB"
        )
    seg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
