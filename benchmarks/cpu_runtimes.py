"""ONNX Runtime vs OpenVINO on the CPU, the same files side by side: FP32, FP16, the Q/DQ INT8 file
(TensorRT's form) and the QOperator INT8 file (ONNX Runtime's CPU form). Not run by CI.

    .venv/bin/python benchmarks/cpu_runtimes.py                       # the shipped default model
    .venv/bin/python benchmarks/cpu_runtimes.py --onnx edgeseg-work/m/m.onnx --rounds 5
    # a paper model at 512x1024 (seconds per frame on 2 cores: few runs, still interleaved)
    .venv/bin/python benchmarks/cpu_runtimes.py --onnx edgeseg-work/fcn8s-vgg16-512x1024/fcn8s-vgg16-512x1024.onnx \
        --rounds 3 --runs 2 --warmup 1

Per (file, runtime): the backend's own latency for one preprocessed frame (`backend.run`, no pre- or
post-processing), the median over --rounds interleaved rounds of --runs timed runs each (every
runtime's round runs back to back with the others', so a busy neighbour slows them all alike), and
the argmax agreement with ONNX Runtime FP32 on the same frames. The INT8 files are quantized here
from one set of calibration statistics (--calib generated scenes) unless they exist beside --onnx.
The ratio column is what to read on a shared machine; the ms say which machine it was (printed).
The last line names the fastest (file, runtime) pair: the "best CPU runtime" of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg import machine
from edgeseg.artifacts import card_from_metadata, int8_path, onnx_metadata, variant_path
from edgeseg.defaults import CALIB_IMAGES
from edgeseg.errors import first_line
from edgeseg.runtime.backends import BackendOptions, load_backend
from edgeseg.runtime.workers import available_cores

KINDS = ("fp32", "fp16", "int8-qdq", "int8-cpu")
RUNTIMES = ("onnxruntime", "openvino")


def make_variants(base: Path, calib: int) -> dict[str, Path]:
    """FP16 and both INT8 forms beside `base`, made only where missing."""
    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration
    from edgeseg.calib.quantize import quantize_cpu_form, quantize_tensorrt_form
    from edgeseg.export.fp16 import write_fp16

    card = card_from_metadata(base, onnx_metadata(base))
    paths = {"fp32": base, "fp16": variant_path(base, "fp16")}
    paths |= {f"int8-{form}": int8_path(base, form) for form in ("qdq", "cpu")}
    if not paths["fp16"].is_file():
        write_fp16(base)
    if not (paths["int8-qdq"].is_file() and paths["int8-cpu"].is_file()):
        stats = calibrate(base, card, open_calibration("synth", card, calib, seed=0), method="entropy")
        if not paths["int8-qdq"].is_file():
            quantize_tensorrt_form(base, card, stats, paths["int8-qdq"])
        if not paths["int8-cpu"].is_file():
            quantize_cpu_form(base, card, stats, paths["int8-cpu"])
    return paths


def frames(card: Any, n: int = 4) -> list[np.ndarray]:
    from edgeseg.data.synth import SceneGenerator
    from edgeseg.preprocess import Preprocessor

    h, w = card.input_size
    gen = SceneGenerator(h, w, seed=11)
    pre = Preprocessor(card)
    return [pre(cv2.cvtColor(gen.scene(i)[0], cv2.COLOR_RGB2BGR))[0] for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, help="FP32 ONNX [the shipped default model]")
    ap.add_argument("--threads", type=int, default=available_cores())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs per backend before each round")
    ap.add_argument("--calib", type=int, default=CALIB_IMAGES, help="generated calibration scenes")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    load_before = list(os.getloadavg())

    with tempfile.TemporaryDirectory(prefix="edgeseg-cpu-rt-") as tmp:
        if args.onnx is None:
            from edgeseg.defaults import default_model_path

            base = Path(tmp) / "edgeseg-default.onnx"
            shutil.copy(default_model_path("onnx"), base)
        else:
            base = args.onnx
        paths = make_variants(base, args.calib)
        card = card_from_metadata(base, onnx_metadata(base))
        batches = frames(card)
        backends: dict[tuple[str, str], Any] = {}
        errors: dict[tuple[str, str], str] = {}
        for kind in KINDS:
            for rt in RUNTIMES:
                try:
                    backends[kind, rt] = load_backend(
                        paths[kind], BackendOptions(backend=rt, threads=args.threads)
                    )
                except Exception as exc:  # noqa: BLE001 - a runtime refusing a file is a result
                    errors[kind, rt] = first_line(exc)[:120]
        ref = [backends["fp32", "onnxruntime"].run(b).argmax(1) for b in batches]
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in backends}
        for _ in range(args.rounds):
            for key, backend in backends.items():
                for i in range(args.warmup):
                    backend.run(batches[i % len(batches)])  # warm
                t = []
                for i in range(args.runs):
                    t0 = time.perf_counter()
                    backend.run(batches[i % len(batches)])
                    t.append((time.perf_counter() - t0) * 1e3)
                samples[key].append(statistics.median(t))
        ort_fp32 = statistics.median(samples["fp32", "onnxruntime"])
        rows = []
        for kind in KINDS:
            for rt in RUNTIMES:
                key = (kind, rt)
                if key in errors:
                    rows.append({"file": kind, "runtime": rt, "error": errors[key]})
                    continue
                ms = statistics.median(samples[key])
                out = [backends[key].run(b) for b in batches]
                agree = float(np.mean([(o.argmax(1) == r).mean() for o, r in zip(out, ref)]))
                rows.append(
                    {
                        "file": kind,
                        "runtime": rt,
                        "ms": ms,
                        "vs_ort_fp32": ort_fp32 / ms,
                        "agree": agree,
                        "rounds_ms": samples[key],
                    }
                )
        for backend in backends.values():
            backend.close()
    load_after = list(os.getloadavg())
    loads = (
        " / ".join(f"{v:.2f}" for v in load_before) + " before, " + " / ".join(f"{v:.2f}" for v in load_after)
    )
    print(f"machine: {machine.summary(args.threads)}; load average (1/5/15 min) {loads} after")
    h, w = card.input_size
    print(f"model: {card.model} 1x3x{h}x{w}, median of {args.rounds} interleaved rounds x {args.runs} runs\n")
    print("| file | runtime | ms per frame | speed vs ORT FP32 | argmax agreement vs ORT FP32 |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['file']} | {r['runtime']} | cannot run: {r['error']} | | |")
        else:
            print(
                f"| {r['file']} | {r['runtime']} | {r['ms']:.1f} | {r['vs_ort_fp32']:.2f}x | {r['agree']:.4f} |"
            )
    best = fastest(rows)
    if best is not None:
        print(
            f"\nbest CPU runtime: {best['runtime']} on the {best['file']} file, {best['vs_ort_fp32']:.2f}x "
            "ONNX Runtime FP32"
        )
    if args.json:
        summary = {"machine": machine.describe(), "model": card.model, "input_size": [h, w], "rows": rows}
        summary |= {"rounds": args.rounds, "runs": args.runs, "threads": args.threads, "best": best}
        summary |= {"loadavg_before": load_before, "loadavg_after": load_after}
        args.json.write_text(json.dumps(summary, indent=2))


def fastest(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The (file, runtime) pair with the lowest median latency."""
    measured = [r for r in rows if "ms" in r]
    return min(measured, key=lambda r: r["ms"]) if measured else None


if __name__ == "__main__":
    main()
