"""End-to-end pipeline FPS on a video versus the bare backend's throughput on the same frames.

The bare numbers are `backend.run` in a loop on frames that were decoded and preprocessed beforehand,
so they are the ceiling, measured two ways: one session with every thread ("bare 1x"), and as many
sessions as the pipeline's workers, each with its share of the threads, running side by side on
alternate frames ("bare Nx"). The pipeline decodes, preprocesses, infers, post-processes (argmax,
resize to the frame, histogram) and outputs on separate threads. The ratio is the pipeline's FPS over
the faster bare figure: how much of the backend's best speed survives streaming (target >= 0.95 on CPU).
The ratio over the one-session figure alone is reported beside it. Both sides are timed from start to
last result over the same number of frames (fill and drain included), with warmed-up sessions.

Pipelines measured in the same rounds: "headless" is what `edgeseg run --video` does by default
(with the worker plan it picks, runtime/workers.py); "headless-1w" is one worker with every thread;
"overlay" also colours and blends every frame at its own size, as `--save out.mp4` and `--show` need
(the video encoding itself excluded).

It also reports what postprocessing costs next to inference at 512x1024 frames (target < 10%), and
where the CPU goes: process CPU per frame on both sides (every thread, FFmpeg's and ONNX Runtime's
included), each pipeline stage thread's share, and the stage floor (decode, preprocess and
postprocess with nothing else running). FPS = cores busy / CPU per frame, so when bare and pipeline
both keep every core busy the FPS ratio follows bare CPU / pipeline CPU per frame, and with free
threading it would be about bare CPU / (bare CPU + stage floor); both are printed (each CPU figure
moves by a few % from run to run).

    python benchmarks/pipeline_vs_backend.py [--model M.onnx] [--frames 100] [--rounds 3] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from edgeseg.data.synth import write_video
from edgeseg.runtime import Segmenter
from edgeseg.runtime.backends import BackendOptions
from edgeseg.runtime.draw import Renderer, class_histogram, fast_argmax
from edgeseg.runtime.launch import plan_inference, share_cores_with
from edgeseg.runtime.plan import RunPlan, View
from edgeseg.runtime.sources import VideoSource
from edgeseg.runtime.workers import WorkerPlan


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


def bare_backend_seconds(backends: list, batches: list[np.ndarray]) -> tuple[float, float]:
    """Wall time and process CPU time of backend.run alone over already decoded and preprocessed
    frames; with several backends, each runs on its own thread over every len(backends)-th frame."""

    def drive(backend, share: list[np.ndarray]) -> None:
        for b in share:
            backend.run(b)

    n = len(backends)
    threads = [threading.Thread(target=drive, args=(b, batches[i::n])) for i, b in enumerate(backends)]
    c0, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, time.process_time() - c0


class WarmSegmenter(Segmenter):
    """Spawned workers infer one frame before the pipeline starts its clock, as the bare backends
    are warmed up before theirs (a fresh ONNX Runtime session's first run allocates its arena)."""

    warm_batch: np.ndarray | None = None

    def spawn_backend(self):
        backend = super().spawn_backend()
        if self.warm_batch is not None:
            backend.run(self.warm_batch)
        return backend


def pipeline_run(
    seg: Segmenter, video: Path, frames: int, render: bool, workers: int
) -> tuple[float, int, dict]:
    """Seconds and frames of the full threaded pipeline, from its start (source open) to the last
    result: like the bare loop's wall time, it includes filling and draining. (Timing from the first
    result instead would favour several workers, whose first results can arrive together.) The run is
    a RunPlan like `edgeseg run`'s; `render` draws every frame with no output attached (View.draw)."""
    plan = RunPlan(
        model=seg,
        sources=(VideoSource(video),),
        view=View(mode="overlay", draw=render),
        workers=workers,
        max_frames=frames,
    )
    run = plan.open()
    stats = run.driver.run()
    assert stats.last_done is not None
    return stats.last_done - stats.started, stats.processed, run.report().to_dict()


def compare(one: Segmenter, split: Segmenter, workers: int, video: Path, frames: int, rounds: int) -> dict:
    """Interleave bare and pipelined rounds so load changes on a shared machine hit all alike.

    `one` has every thread (one session); `split` has the per-worker share, and `workers` sessions
    of it run side by side. With one worker the two bare forms and the two headless pipelines are the
    same thing, measured once and reported under both names."""
    batches = load_batches(one, video, frames)
    if isinstance(split, WarmSegmenter):
        split.warm_batch = batches[0]
    parallel = [split.backend, *(split.spawn_backend() for _ in range(workers - 1))]
    for b in batches[:3]:  # warm-up
        for backend in (one.backend, *parallel):
            backend.run(b)
    bare = {"bare": [one.backend], "bare_parallel": parallel}
    pipelines = {  # mode -> (segmenter, workers, render)
        "headless": (split, workers, False),
        "headless_1w": (one, 1, False),
        "overlay": (split, workers, True),
    }
    same = {"bare_parallel": "bare", "headless_1w": "headless"} if workers == 1 else {}
    for alias in same:
        bare.pop(alias, None)
        pipelines.pop(alias, None)
    seconds = dict.fromkeys(MODES, 0.0)
    cpu_seconds = dict.fromkeys(MODES, 0.0)
    counts = dict.fromkeys(MODES, 0)
    reports: dict = {}
    per_round = []
    for _ in range(rounds):
        row = {}
        for mode, backends in bare.items():
            t, c = bare_backend_seconds(backends, batches)
            seconds[mode] += t
            cpu_seconds[mode] += c
            counts[mode] += len(batches)
            row[f"{mode}_fps"] = len(batches) / t
        for mode, (seg, n_workers, render) in pipelines.items():
            s, n, reports[mode] = pipeline_run(seg, video, frames, render, n_workers)
            seconds[mode] += s
            cpu_seconds[mode] += reports[mode]["cpu"]["process_ms_per_frame"] * n / 1000.0
            counts[mode] += n
            row[f"{mode}_fps"] = n / s
        for alias, measured in same.items():
            seconds[alias], counts[alias] = seconds[measured], counts[measured]
            cpu_seconds[alias] = cpu_seconds[measured]
            row[f"{alias}_fps"] = row[f"{measured}_fps"]
        row["best_bare_fps"] = max(row["bare_fps"], row["bare_parallel_fps"])
        per_round.append(row)
    for backend in parallel[1:]:
        backend.close()
    return {
        "fps": {m: counts[m] / seconds[m] for m in MODES},
        "cpu_ms_per_frame": {m: cpu_seconds[m] * 1000.0 / counts[m] for m in MODES},
        "cores_busy": {m: cpu_seconds[m] / seconds[m] for m in MODES},
        "rounds": per_round,
        "reports": reports,
    }


MODES = ("bare", "bare_parallel", "headless", "headless_1w", "overlay")


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: lazy initialisation (OpenCV thread pool, ORT arenas) is not per-frame cost
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))  # the median shrugs off other jobs' bursts on a shared machine


def stage_floor(seg: Segmenter, video: Path, frames: int) -> dict:
    """CPU ms per frame of decoding, preprocessing and postprocessing with nothing else running: the
    least the pipeline's own stages can cost. Decoding is timed alone (a pass that only reads frames;
    process time, so FFmpeg's decoder threads count), preprocessing and postprocessing in a plain
    serial loop (decode, preprocess, infer, postprocess; thread time of the steps). Next to the bare
    inference CPU per frame this estimates the best pipeline/bare ratio on saturated cores if
    threading itself were free."""
    from edgeseg.runtime.draw import frame_class_histogram

    decoded = 0
    with VideoSource(video) as src:  # opening is not timed: the pipeline opens before its clock starts
        c0 = time.process_time()
        while decoded < frames and src.read() is not None:
            decoded += 1
        decode = time.process_time() - c0
    pre = post = 0.0
    count = 0
    clock = time.thread_time  # OpenCV is held to this thread (share_cores_with)
    with VideoSource(video) as src:
        while count < frames and (frame := src.read()) is not None:
            c0 = clock()
            batch, geom = seg.preprocess(frame.image)
            pre += clock() - c0
            output = seg.backend.run(batch)
            c0 = clock()
            labels, _ = seg.net_labels(output)
            frame_class_histogram(labels, geom, seg.card.num_classes)
            post += clock() - c0
            count += 1
    return {
        "decode": decode * 1000 / decoded,
        "preprocess": pre * 1000 / count,
        "postprocess": post * 1000 / count,
    }


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


def summarize(
    model: Path,
    backend: str,
    plan: WorkerPlan,
    threads: int | None,
    video: Path | None,
    cmp: dict,
    floor: dict,
    post: dict,
) -> dict:
    """Every figure of one comparison, and the CPU arithmetic that explains the ratio."""
    report = cmp["reports"]["headless"]
    fps = cmp["fps"]
    best_bare = max(fps["bare"], fps["bare_parallel"])
    best_mode = "bare" if fps["bare"] >= fps["bare_parallel"] else "bare_parallel"
    cpu = cmp["cpu_ms_per_frame"]
    bare_cpu = cpu[best_mode]

    def median_ratio(mode: str) -> float:
        return float(np.median([r[f"{mode}_fps"] / r["best_bare_fps"] for r in cmp["rounds"]]))

    result = {
        "model": str(model),
        "backend": backend,
        "workers": plan.workers,
        "threads_per_worker": plan.threads,
        "threads_bare": threads,
        "video": str(video or "generated 512x1024 street scenes"),
        "frames_per_round": report["frames"]["processed"],
        "rounds": cmp["rounds"],
        "bare_backend_fps": fps["bare"],
        "bare_parallel_fps": fps["bare_parallel"],
        "best_bare_fps": best_bare,
        "best_bare_mode": best_mode,
        "pipeline_fps": fps["headless"],  # `edgeseg run --video` as it runs by default
        "ratio": fps["headless"] / best_bare,
        "ratio_median_of_rounds": median_ratio("headless"),
        "ratio_vs_one_session": fps["headless"] / fps["bare"],
        "one_worker_pipeline_fps": fps["headless_1w"],
        "one_worker_ratio": fps["headless_1w"] / best_bare,
        "overlay_pipeline_fps": fps["overlay"],
        "overlay_ratio": fps["overlay"] / best_bare,
        "overlay_ratio_median_of_rounds": median_ratio("overlay"),
        "stages_p50_ms": {k: v["p50"] for k, v in report["latency_ms"]["stages"].items()},
        "overlay_stages_p50_ms": {
            k: v["p50"] for k, v in cmp["reports"]["overlay"]["latency_ms"]["stages"].items()
        },
        "latency_ms": report["latency_ms"]["capture_to_result"],
        "postprocess_at_512x1024": post,
        "cpu_ms_per_frame": cpu,  # process CPU per frame, every thread (decoder, runtime pools) included
        "cores_busy": cmp["cores_busy"],
        "pipeline_stage_cpu_ms": report["cpu"]["stage_ms_per_frame"],
        "stage_floor_ms": floor,
        # FPS = cores busy / CPU per frame; with every core busy on both sides, the ratio follows CPU:
        "cpu_bound_ratio": bare_cpu / cpu["headless"],
        "cores": report["cpu"]["cores"],
        "saturated": min(cmp["cores_busy"][best_mode], cmp["cores_busy"]["headless"])
        >= 0.9 * report["cpu"]["cores"],
        # ... and even with free threading, decoding + pre + postprocessing come on top of inference
        # (an estimate: both CPU figures vary by a few % from run to run):
        "zero_overhead_estimate": bare_cpu / (bare_cpu + sum(floor.values())),
    }
    return result


def print_text(result: dict, plan: WorkerPlan, rounds: int, threads: int | None) -> None:
    """The comparison as lines for a person, ratios side by side."""
    fps = {
        "bare": result["bare_backend_fps"],
        "bare_parallel": result["bare_parallel_fps"],
        "headless": result["pipeline_fps"],
        "headless_1w": result["one_worker_pipeline_fps"],
        "overlay": result["overlay_pipeline_fps"],
    }
    best_mode, cpu, busy = result["best_bare_mode"], result["cpu_ms_per_frame"], result["cores_busy"]
    bare_cpu, floor, post = cpu[best_mode], result["stage_floor_ms"], result["postprocess_at_512x1024"]
    best_bare = result["best_bare_fps"]
    print(f"model            {Path(result['model']).name}  ({result['backend']})")
    print(f"frames           {rounds} x {result['frames_per_round']} of {result['video']}")
    print(f"bare, 1 session  {fps['bare']:8.2f} FPS  ({threads or 'default'} threads)")
    print(f"bare, {plan.workers} sessions {fps['bare_parallel']:8.2f} FPS  ({plan.describe()}, side by side)")
    labels = {
        "headless": f"headless, {plan.workers} worker(s) (edgeseg run)",
        "headless_1w": "headless, 1 worker",
        "overlay": f"overlay, {plan.workers} worker(s)",
    }
    for mode, label in labels.items():
        ratio = fps[mode] / best_bare
        per_round = " ".join(f"{r[f'{mode}_fps'] / r['best_bare_fps']:.3f}" for r in result["rounds"])
        print(f"{label:<36}{fps[mode]:8.2f} FPS  ratio {ratio:.3f} (target >= 0.95)  per round {per_round}")
    print(
        f"ratios are over the faster bare figure; over the one-session figure alone the default "
        f"pipeline keeps {result['ratio_vs_one_session']:.3f}"
    )
    for mode, key in (("headless", "stages_p50_ms"), ("overlay", "overlay_stages_p50_ms")):
        stages = result[key]
        print(f"{mode:<8} p50 ms {json.dumps({k: round(v, 2) for k, v in stages.items()})}")
    print(
        f"CPU per frame    {best_mode.replace('_', ' ')} {bare_cpu:.2f} ms ({busy[best_mode]:.2f} cores busy), "
        f"headless {cpu['headless']:.2f} ms ({busy['headless']:.2f} cores busy) of {result['cores']} cores"
    )
    stage_cpu = ", ".join(f"{k} {v:.2f}" for k, v in result["pipeline_stage_cpu_ms"].items())
    print(f"headless stages CPU ms per frame: {stage_cpu}")
    print(
        f"stage floor      decode {floor['decode']:.2f}, preprocess {floor['preprocess']:.2f}, "
        f"postprocess {floor['postprocess']:.2f} ms per frame with nothing else running"
    )
    if result["saturated"]:
        print(
            "every core is busy on both sides, and FPS = cores busy / CPU per frame: the ratio follows "
            f"bare / pipelined CPU per frame = {result['cpu_bound_ratio']:.3f}; with free threading it "
            f"would be about bare / (bare + floor) = {result['zero_overhead_estimate']:.3f}"
        )
    else:
        print("the cores are not all busy: the pipeline's own stages run on idle cores")
    print(
        f"postprocess      {post['postprocess_ms']:.1f} ms vs inference {post['inference_ms']:.1f} ms at "
        f"{post['frame'][0]}x{post['frame'][1]} = {post['postprocess_share']:.1%} (target < 10%); "
        f"numpy argmax alone {post['numpy_argmax_ms']:.1f} ms"
    )


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
    options = BackendOptions(threads=args.threads)
    inference = plan_inference(model, options, live=False)  # as `edgeseg run`
    plan = inference.workers
    one = Segmenter(model, options)
    split = one if plan.workers == 1 else WarmSegmenter(inference.loader)
    share_cores_with(one.backend)  # as `edgeseg run` does (bare rounds do not use OpenCV)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video or write_video(Path(tmp) / "scenes.mp4", args.frames, 512, 1024, seed=7)[0]
        cmp = compare(one, split, plan.workers, video, args.frames, args.rounds)
        floor = stage_floor(split, video, args.frames)
    post = postprocess_cost(one, (512, 1024))
    result = summarize(model, one.backend.describe(), plan, args.threads, args.video, cmp, floor, post)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_text(result, plan, args.rounds, args.threads)
    one.close()
    if split is not one:
        split.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
