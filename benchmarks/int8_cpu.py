"""FP32 vs INT8 on ONNX Runtime CPU: latency ratio and mIoU side by side (not run by CI).

    .venv/bin/python benchmarks/int8_cpu.py                     # FCN-8s ResNet-18 at 512x1024, 2 threads
    .venv/bin/python benchmarks/int8_cpu.py --onnx edgeseg-work/fcn8s/fcn8s.onnx

Without --onnx the reference edge model (FCN-8s, ResNet-18 backbone) is trained for a few hundred
steps on generated scenes at low resolution (a fully convolutional net runs at any size), so that the
activations and the mIoU mean something, then exported at --height x --width with edgeseg's exporter.
Every INT8 variant is quantized from ONE set of calibration statistics. Latency is the median (and
minimum) of --runs timed runs after warm-up; the machine is shared, so read the ratio, not the ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def train_reference(
    out: Path, height: int, width: int, steps: int, backbone: str, train_hw: tuple[int, int]
) -> Path:
    import torch
    import torch.nn.functional as F

    from edgeseg.card import ModelCard
    from edgeseg.data.synth import SYNTH_CLASSES, SYNTH_PALETTE, SceneGenerator
    from edgeseg.export.onnx_export import export_onnx
    from edgeseg.models import create_model
    from edgeseg.preprocess import Preprocessor

    torch.manual_seed(0)
    net = create_model("fcn8s", num_classes=len(SYNTH_CLASSES), backbone=backbone)
    card = ModelCard(
        model="fcn8s",
        classes=list(SYNTH_CLASSES),
        palette=list(SYNTH_PALETTE),
        input_size=(height, width),
        model_kwargs=dict(getattr(net, "edgeseg_kwargs", {})),
    )
    if steps:
        th, tw = train_hw
        gen = SceneGenerator(th, tw, seed=0)
        pre = Preprocessor(card.replace(input_size=(th, tw)), input_bgr=False)
        scenes = [gen.scene(i) for i in range(256)]
        x = torch.from_numpy(np.concatenate([pre(rgb)[0] for rgb, _ in scenes]))
        y = torch.from_numpy(np.stack([m for _, m in scenes]).astype(np.int64))
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
        net.train()
        t0 = time.perf_counter()
        for step in range(steps):
            idx = torch.randint(0, len(scenes), (8,))
            loss = F.cross_entropy(net(x[idx]), y[idx], ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 50 == 0 or step == steps - 1:
                print(
                    f"  train step {step:4d} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    net.eval()
    path = out / "fcn8s" / "fcn8s.onnx"
    export_onnx(net, path, card, height=height, width=width, parity_scenes=1, source="benchmark")
    return path


def latencies(
    paths: dict[str, Path], batch: np.ndarray, threads: int, runs: int
) -> dict[str, tuple[float, float]]:
    """(median, min) ms per model. Runs are interleaved round-robin so that load from other processes
    on a shared machine hits every variant alike and the ratios stay fair."""
    import onnxruntime as ort

    sessions = {}
    for key, path in paths.items():
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: batch}
        for _ in range(2):
            sess.run(None, feed)
        sessions[key] = (sess, feed)
    times: dict[str, list[float]] = {key: [] for key in paths}
    for _ in range(runs):
        for key, (sess, feed) in sessions.items():
            t = time.perf_counter()
            sess.run(None, feed)
            times[key].append((time.perf_counter() - t) * 1000)
    return {key: (statistics.median(v), min(v)) for key, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--onnx", type=Path, help="An FP32 edgeseg export to benchmark (default: build FCN-8s R18)."
    )
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--train-size", default="128x256", help="HxW of the quick training run.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--calib-images", type=int, default=16)
    ap.add_argument("--calib-method", default="percentile")
    ap.add_argument("--eval-images", type=int, default=8)
    ap.add_argument("--workdir", type=Path, help="Keep the models here (default: a temporary folder).")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration
    from edgeseg.calib.gate import Gate, open_eval_data
    from edgeseg.calib.quantize import quantize_cpu_form, quantize_tensorrt_form
    from edgeseg.runtime.segmenter import Segmenter

    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-") as tmp:
        work = args.workdir or Path(tmp)
        if args.onnx:
            fp32 = args.onnx
        else:
            th, tw = (int(v) for v in args.train_size.lower().split("x"))
            print(
                f"building FCN-8s {args.backbone} ({args.train_steps} training steps at {th}x{tw}) ...",
                flush=True,
            )
            fp32 = train_reference(work, args.height, args.width, args.train_steps, args.backbone, (th, tw))
        card = Segmenter(fp32).card
        print(f"model {fp32.name}: input {card.input_size}, {args.threads} threads", flush=True)
        calib = open_calibration("synth", card, args.calib_images, 0)
        stats = calibrate(fp32, card, calib, method=args.calib_method, cache_path=work / "calib.json")
        variants = {
            "int8 cpu qoperator (U8S8)": quantize_cpu_form(
                fp32, card, stats, work / "m.int8.cpu.onnx", cpu_format="qoperator"
            ).path,
            "int8 cpu qdq (U8S8)": quantize_cpu_form(
                fp32, card, stats, work / "m.int8.cpuqdq.onnx", cpu_format="qdq"
            ).path,
            "int8 TensorRT-form qdq (S8S8)": quantize_tensorrt_form(
                fp32, card, stats, work / "m.int8.qdq.onnx"
            ).path,
        }
        gate = Gate(fp32, card, open_eval_data(f"synth:{args.eval_images}", card), threads=args.threads)
        gen_frame = calib.image(0)
        batch = Segmenter(fp32).preprocess(cv2.cvtColor(gen_frame, cv2.COLOR_RGB2BGR))[0]
        lat = latencies({"fp32": fp32, **variants}, batch, args.threads, args.runs)
        base_med = lat["fp32"][0]
        rows = [("fp32", *lat["fp32"], gate.fp32.miou, 1.0, 1.0)]
        for name, path in variants.items():
            s = gate.score(path)
            rows.append((name, *lat[name], s.miou, s.agreement, base_med / lat[name][0]))
        print(
            f"\n{'variant':32s} {'median ms':>10s} {'min ms':>8s} {'mIoU':>7s} {'agree %':>8s} {'speed-up':>9s}"
        )
        for name, med, mn, miou, agree, ratio in rows:
            print(f"{name:32s} {med:10.1f} {mn:8.1f} {miou:7.4f} {100 * agree:8.2f} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
