"""End-to-end pipeline FPS on a video versus the bare backend's throughput on the same frames.

The bare number is `backend.run` in a loop on frames that were decoded and preprocessed beforehand,
so it is the ceiling; the pipeline decodes, preprocesses, infers, post-processes (argmax, resize to
the frame, histogram) and outputs on separate threads. The ratio says how much of the backend's speed
survives streaming (target >= 0.95 on CPU). Two pipelines are measured in the same rounds:
"headless" is what `edgeseg run --video` does by default; "overlay" also colours and blends every
frame at its own size, as `--save out.mp4` and `--show` need (the video encoding itself excluded).

It also reports what postprocessing costs next to inference at 512x1024 frames (target < 10%).

    python benchmarks/pipeline_vs_backend.py [--model M.onnx] [--frames 100] [--rounds 3] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from edgeseg.runtime import Pipeline, Segmenter
from edgeseg.runtime.draw import Renderer, class_histogram, fast_argmax
from edgeseg.runtime.pipeline import share_cores_with
from edgeseg.runtime.sources import VideoSource

from edgeseg.data.synth import write_video


def default_model() -> Path:
    from edgeseg.defaults import default_model_path

    return default_model_path("onnx")


def load_batches(seg: Segmenter, video: Path, frames: int) -> list[np.ndarray]:
    batches = []
    src = VideoSource(video)
    with src:
        while len(batches) < frames and (frame := src.read()) is not None:
            batches.append(seg.preprocess(frame.image)[0])
    return batches


def bare_backend_seconds(seg: Segmenter, batches: list[np.ndarray]) -> float:
    """Wall time of backend.run alone over already decoded and preprocessed frames."""
    t0 = time.perf_counter()
    for b in batches:
        seg.backend.run(b)
    return time.perf_counter() - t0


def pipeline_run(seg: Segmenter, video: Path, frames: int, render: bool) -> tuple[float, int, dict]:
    """Steady-state seconds and frames of the full threaded pipeline."""
    renderer = Renderer(seg.palette, seg.classes, mode="overlay") if render else None
    pipe = Pipeline(seg, VideoSource(video), max_frames=frames, renderer=renderer)
    stats = pipe.run()
    assert stats.first_done is not None and stats.last_done is not None
    return stats.last_done - stats.first_done, stats.processed - 1, pipe.report()


def compare(seg: Segmenter, video: Path, frames: int, rounds: int) -> dict:
    """Interleave bare and pipelined rounds so load changes on a shared machine hit both alike."""
    batches = load_batches(seg, video, frames)
    for b in batches[:3]:  # warm-up
        seg.backend.run(b)
    seconds = dict.fromkeys(MODES, 0.0)
    counts = dict.fromkeys(MODES, 0)
    reports: dict = {}
    per_round = []
    for _ in range(rounds):
        t = bare_backend_seconds(seg, batches)
        seconds["bare"] += t
        counts["bare"] += len(batches)
        row = {"bare_fps": len(batches) / t}
        for mode in MODES[1:]:
            s, n, reports[mode] = pipeline_run(seg, video, frames, render=mode == "overlay")
            seconds[mode] += s
            counts[mode] += n
            row[f"{mode}_fps"] = n / s
        per_round.append(row)
    return {
        "fps": {m: counts[m] / seconds[m] for m in MODES},
        "rounds": per_round,
        "reports": reports,
    }


MODES = ("bare", "headless", "overlay")


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: lazy initialisation (OpenCV thread pool, ORT arenas) is not per-frame cost
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))  # the median shrugs off other jobs' bursts on a shared machine


def postprocess_cost(seg: Segmenter, frame_hw: tuple[int, int], repeats: int = 20) -> dict:
    """ms of argmax + resize-to-frame + histogram + LUT + blend for one frame, vs. one inference."""
    from edgeseg.preprocess import labels_to_frame

    frame = np.random.default_rng(0).integers(0, 255, (*frame_hw, 3), dtype=np.uint8)
    batch, geom = seg.preprocess(frame)
    raw = seg.backend.run(batch)
    renderer = Renderer(seg.palette, seg.classes, mode="overlay")

    def post() -> None:
        labels = labels_to_frame(fast_argmax(raw), geom)
        class_histogram(labels, seg.card.num_classes)
        renderer.render(frame, labels)

    infer_ms = _median_ms(lambda: seg.backend.run(batch), repeats)
    post_ms = _median_ms(post, repeats)
    numpy_argmax_ms = _median_ms(lambda: raw[0].argmax(axis=0), repeats)
    return {
        "frame": list(frame_hw),
        "net_input": list(batch.shape[2:]),
        "inference_ms": infer_ms,
        "postprocess_ms": post_ms,
        "postprocess_share": post_ms / infer_ms,
        "numpy_argmax_ms": numpy_argmax_ms,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="ONNX/engine artifact [the shipped default model]")
    ap.add_argument("--video", type=Path, help="video to stream [generated street scenes at 512x1024]")
    ap.add_argument("--frames", type=int, default=100, help="frames per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved bare/pipeline rounds")
    ap.add_argument("--threads", type=int, default=None, help="backend CPU threads [onnxruntime default]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    model = args.model or default_model()
    opts = {"threads": args.threads} if args.threads else {}
    seg = Segmenter(model, **opts)
    share_cores_with(seg.backend)  # as `edgeseg run` does (bare rounds do not use OpenCV)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or write_video(Path(tmp) / "scenes.mp4", args.frames, 512, 1024, seed=7)[0]
        cmp = compare(seg, video, args.frames, args.rounds)
    post = postprocess_cost(seg, (512, 1024))
    report = cmp["reports"]["headless"]
    fps = cmp["fps"]

    def median_ratio(mode: str) -> float:
        return float(np.median([r[f"{mode}_fps"] / r["bare_fps"] for r in cmp["rounds"]]))

    result = {
        "model": str(model),
        "backend": seg.backend.describe(),
        "video": str(args.video or "generated 512x1024 street scenes"),
        "frames_per_round": report["frames"]["processed"],
        "rounds": cmp["rounds"],
        "bare_backend_fps": fps["bare"],
        "pipeline_fps": fps["headless"],  # `edgeseg run --video` as it runs by default
        "ratio": fps["headless"] / fps["bare"],
        "ratio_median_of_rounds": median_ratio("headless"),
        "overlay_pipeline_fps": fps["overlay"],
        "overlay_ratio": fps["overlay"] / fps["bare"],
        "overlay_ratio_median_of_rounds": median_ratio("overlay"),
        "stages_p50_ms": {k: v["p50"] for k, v in report["latency_ms"]["stages"].items()},
        "overlay_stages_p50_ms": {
            k: v["p50"] for k, v in cmp["reports"]["overlay"]["latency_ms"]["stages"].items()
        },
        "latency_ms": report["latency_ms"]["capture_to_result"],
        "postprocess_at_512x1024": post,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"model            {model.name}  ({seg.backend.describe()})")
        print(f"frames           {args.rounds} x {result['frames_per_round']} of {result['video']}")
        print(f"bare backend     {fps['bare']:8.2f} FPS")
        for mode in MODES[1:]:
            ratio = fps[mode] / fps["bare"]
            rounds = " ".join(f"{r[f'{mode}_fps'] / r['bare_fps']:.3f}" for r in cmp["rounds"])
            print(
                f"pipeline {mode:<8}{fps[mode]:8.2f} FPS  ratio {ratio:.3f} (target >= 0.95)  per round {rounds}"
            )
        for mode, key in (("headless", "stages_p50_ms"), ("overlay", "overlay_stages_p50_ms")):
            stages = result[key]
            print(f"{mode:<8} p50 ms {json.dumps({k: round(v, 2) for k, v in stages.items()})}")
            print(
                f"{'':<16}postprocess p50 = {stages['postprocess'] / stages['inference']:.1%} of inference p50"
            )
        print(
            f"postprocess      {post['postprocess_ms']:.1f} ms vs inference {post['inference_ms']:.1f} ms at "
            f"{post['frame'][0]}x{post['frame'][1]} = {post['postprocess_share']:.1%} (target < 10%); "
            f"numpy argmax alone {post['numpy_argmax_ms']:.1f} ms"
        )
    seg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
