"""The whole chain, per model, side by side: PyTorch eager -> ONNX Runtime FP32 -> FP16 -> INT8.

For each model spec this makes every artifact the machine can run, from ONE checkpoint:

1. the checkpoint: the shipped default model (`default`), an edgeseg checkpoint path, or a registered
   model in random init (`fcn8s` = FCN-8s VGG16, `deeplabv3plus` = DeepLabV3+ ResNet-50, or
   `name:key=value:...`), saved with `edgeseg.checkpoint.save_checkpoint` so the eager baseline and the
   export carry the same weights;
2. the ONNX export (`edgeseg.export.onnx_export.export_onnx`) at --height x --width;
3. FP16 and INT8 (CPU form + TensorRT Q/DQ form) via `edgeseg.build.build`. For
   random weights the mIoU gate is meaningless, so it is disabled (limit 100 points, no fallback);
4. `edgeseg.bench.run_bench`: every artifact in its own spawned process on the same frames;
5. `benchmarks/pipeline_vs_backend.py` (invoked, not copied) on the FP32 export.

Then it prints the target ratios with an honest PASS/MISS each. mIoU of random weights means nothing
and is printed as "n/a (random weights)". Specs, targets, verdicts and tables are library code
(`edgeseg.benchmarking`); this script makes the artifacts and measures.

    .venv/bin/python benchmarks/chain.py                                   # default,fcn8s,deeplabv3plus
    .venv/bin/python benchmarks/chain.py --models fcn8s --iterations 3 --frames 3 --warmup 1
    .venv/bin/python benchmarks/chain.py --models deeplabv3plus:backbone=mobilenet_v3_large \\
        --height 64 --width 128 --json-out chain.json --markdown-out chain.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgeseg.benchmarking.report import (
    RATIO_COLUMNS,
    RESULT_COLUMNS,
    describe_config,
    markdown,
    ratio_rows,
    result_rows,
)
from edgeseg.benchmarking.specs import ModelSpec, parse_spec
from edgeseg.benchmarking.targets import RANDOM_NOTE, ratios
from edgeseg.defaults import CALIB_IMAGES, GATE_IMAGES, MAX_MIOU_DROP

HERE = Path(__file__).resolve().parent
PIPELINE_SCRIPT = HERE / "pipeline_vs_backend.py"


# --- making the artifacts ---------------------------------------------------------------------------
def prepare_checkpoint(
    spec: ModelSpec, size: tuple[int, int], root: Path, seed: int = 0, reuse: bool = False
) -> Path:
    """An edgeseg checkpoint whose card says `size`, so eager and ONNX see the same input resolution."""
    from edgeseg.checkpoint import load_checkpoint, save_checkpoint

    target = root / "train" / spec.key / f"chain-{size[0]}x{size[1]}" / "best.pt"
    if reuse and target.is_file():
        return target
    if spec.checkpoint is not None:
        payload = load_checkpoint(spec.checkpoint)
        card = payload["card"]
        if tuple(card.input_size) == tuple(size):
            return spec.checkpoint
        # same weights, card re-targeted: Segmenter on a .pt preprocesses to the card's input size
        save_checkpoint(
            target,
            payload["model"],
            card.replace(input_size=size),
            metrics=payload.get("metrics"),
            data_hash=payload.get("data_hash"),
        )
        return target
    import torch

    from edgeseg.card import ModelCard
    from edgeseg.data.synth import SYNTH_CLASSES, SYNTH_PALETTE
    from edgeseg.models import create_model

    torch.manual_seed(seed)
    net = create_model(spec.model, num_classes=len(SYNTH_CLASSES), **spec.kwargs)
    card = ModelCard(
        model=spec.model,
        classes=list(SYNTH_CLASSES),
        palette=list(SYNTH_PALETTE),
        input_size=size,
        model_kwargs=dict(net.edgeseg_kwargs),
        extra={"weights": "random init (benchmarks/chain.py)", "seed": seed},
    )
    save_checkpoint(target, net.state_dict(), card, metrics={})
    return target


def export(checkpoint: Path, out: Path, size: tuple[int, int], step: Any) -> Path:
    from edgeseg.export.onnx_export import export_onnx

    export_onnx(checkpoint, out, height=size[0], width=size[1], parity_scenes=1, on_step=step)
    return out


def build_variants(onnx_path: Path, args: argparse.Namespace, trained: bool, progress: Any) -> dict:
    """FP16 + INT8 beside the export; returns the build report as a dict (gate results included)."""
    from edgeseg.build import BuildOptions, build

    gate_off = not trained or args.no_gate
    opts = BuildOptions(
        fp16=True,
        int8=True,
        forms=tuple(args.forms.split(",")),
        calib_images=args.calib_images,
        calib_method=args.calib_method,
        eval_images=args.eval_images,
        # a gate on random weights would compare noise with noise: limit 100 points, no fallback
        max_miou_drop=100.0 if gate_off else args.max_miou_drop,
        max_fallback_layers=0 if gate_off else None,
        threads=args.threads,
    )
    report = build(onnx_path, opts, progress=progress)
    out = report.to_dict()
    out["gate"] = "disabled (random weights)" if not trained else ("disabled" if gate_off else "on")
    return out


def pipeline_ratio(onnx_path: Path, args: argparse.Namespace) -> dict:
    """Run benchmarks/pipeline_vs_backend.py in its own process and keep its JSON."""
    cmd = [
        sys.executable,
        str(PIPELINE_SCRIPT),
        "--model",
        str(onnx_path),
        "--frames",
        str(args.pipeline_frames),
        "--rounds",
        str(args.pipeline_rounds),
        "--threads",
        str(args.threads),
        "--json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"pipeline_vs_backend.py exited {proc.returncode}: {tail}", "command": cmd}
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": "pipeline_vs_backend.py printed no JSON", "command": cmd}
    data["command"] = cmd
    return data


# --- one model, start to finish ---------------------------------------------------------------------
def build_or_reuse(base: Path, args: argparse.Namespace, trained: bool, reuse: bool, progress: Any) -> dict:
    """The FP16 and INT8 files of `base`: those of an earlier run with --reuse when all are there (a
    partial earlier build is redone), else built now."""
    from edgeseg.artifacts import int8_path, variant_path

    variants = [variant_path(base, "fp16")]
    variants += [int8_path(base, form) for form in args.forms.split(",")]
    if reuse and all(p.is_file() for p in variants):
        return {"reused": [p.name for p in variants]}
    return build_variants(base, args, trained, progress)


def run_model(spec: ModelSpec, args: argparse.Namespace, root: Path, console: Any) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgeseg import bench

    size = (args.height, args.width)
    name = f"{spec.key}-{size[0]}x{size[1]}"
    base = root / name / f"{name}.onnx"
    timings: dict[str, float] = {}
    with Progress(
        TextColumn("[bold]{task.fields[model]}[/]"),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as bar:
        task = bar.add_task("checkpoint", total=None, model=name)

        def step(msg: str) -> None:
            bar.update(task, description=msg, completed=0, total=None)

        def progress(msg: str, done: int, total: int) -> None:
            bar.update(task, description=msg, completed=done, total=total)

        t0 = time.perf_counter()
        step("checkpoint")
        ckpt = prepare_checkpoint(spec, size, root, seed=args.seed, reuse=args.reuse)
        timings["checkpoint_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        reuse = args.reuse and base.is_file()
        if not reuse:
            export(ckpt, base, size, step)
        timings["export_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        build = build_or_reuse(base, args, spec.trained, reuse, progress)
        timings["build_s"] = time.perf_counter() - t0
        if args.prepare_only:
            return {
                "spec": spec.text,
                "name": name,
                "checkpoint": str(ckpt),
                "build": build,
                "timings": timings,
            }

        cfg = bench.BenchConfig(
            data=f"synth:{args.frames}",
            height=size[0],
            width=size[1],
            threads=args.threads,
            warmup=args.warmup,
            iterations=args.iterations,
        )
        artifacts = bench.discover(base, ckpt)
        bar.update(task, total=len(artifacts), completed=0, description="benchmarking")

        t0 = time.perf_counter()
        done = [0]

        def measuring_art(art: bench.Artifact) -> None:
            bar.update(task, description=f"measuring {art.label}", completed=done[0])
            done[0] += 1

        results = bench.run_bench(artifacts, cfg, measuring_art)
        timings["bench_s"] = time.perf_counter() - t0
        pipeline = None
        if args.pipeline_frames > 0:
            step("pipeline vs bare backend")
            t0 = time.perf_counter()
            pipeline = pipeline_ratio(base, args)
            timings["pipeline_s"] = time.perf_counter() - t0
    rows = [asdict(r) for r in results]
    if not spec.trained:
        for r in rows:
            r["miou"] = None
            r["miou_note"] = RANDOM_NOTE
    return {
        "spec": spec.text,
        "name": name,
        "model": spec.model or spec.key,
        "kwargs": spec.kwargs,
        "trained": spec.trained,
        "checkpoint": str(ckpt),
        "input_size": list(size),
        "config": asdict(cfg),
        "build": build,
        "results": rows,
        "pipeline": pipeline,
        "ratios": ratios(rows, pipeline, spec.trained, build),
        "timings": timings,
        "loadavg_after": list(os.getloadavg()),
    }


# --- reporting --------------------------------------------------------------------------------------
def print_report(report: dict, console: Any) -> None:
    from edgeseg.console import table

    for model in report["models"]:
        if "results" not in model:
            console.print(
                f"prepared {model['name']} ({model['checkpoint']}) in {sum(model['timings'].values()):.0f} s"
            )
            continue
        console.print(table(f"chain: {model['name']}", RESULT_COLUMNS, result_rows(model)))
        console.print(f"[dim]{describe_config(model)}[/]")
        console.print(table(f"targets: {model['name']}", RATIO_COLUMNS, ratio_rows(model)))
    for failure in report.get("failures", []):
        console.print(f"[red]{failure['spec']}: not measured: {failure['error']}[/]")
    m = report["machine"]
    console.print(f"[dim]{m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}[/]")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="default,fcn8s,deeplabv3plus", help="comma-separated model specs")
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per backend")
    ap.add_argument("--warmup", type=int, default=2, help="untimed frames per artifact")
    ap.add_argument("--iterations", type=int, default=20, help="timed frames per artifact")
    ap.add_argument("--frames", type=int, default=16, help="held-out generated scenes (timing + mIoU)")
    ap.add_argument("--forms", default="cpu,qdq", help="INT8 forms to build (cpu, qdq)")
    ap.add_argument("--calib-images", type=int, default=CALIB_IMAGES)
    ap.add_argument(
        "--calib-method",
        default="entropy",
        help="entropy | percentile | minmax (minmax: big nets, low memory)",
    )
    ap.add_argument("--eval-images", type=int, default=GATE_IMAGES, help="images the INT8 gate scores")
    ap.add_argument(
        "--max-miou-drop", type=float, default=MAX_MIOU_DROP, help="INT8 gate limit (trained weights)"
    )
    ap.add_argument("--no-gate", action="store_true", help="build INT8 without the mIoU gate")
    ap.add_argument("--pipeline-frames", type=int, default=60, help="0 skips pipeline_vs_backend.py")
    ap.add_argument("--pipeline-rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="random-init seed")
    ap.add_argument("--reuse", action="store_true", help="keep an existing checkpoint, export and variants")
    ap.add_argument(
        "--prepare-only",
        action="store_true",
        help="make the artifacts, measure nothing (time it later with --reuse)",
    )
    ap.add_argument("--workdir", type=Path, help="workspace (default: $EDGESEG_WORKDIR or ./edgeseg-work)")
    ap.add_argument("--json-out", type=Path, help="write the full report as JSON here")
    ap.add_argument("--markdown-out", type=Path, help="write the tables as Markdown here")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edgeseg import machine, workspace
    from edgeseg.atomic import atomic_open, write_json
    from edgeseg.console import console, err_console
    from edgeseg.errors import EdgesegError

    try:
        specs = [parse_spec(s) for s in args.models.split(",")]
        if min(args.height, args.width) < 16 or min(args.iterations, args.frames) < 1:
            raise EdgesegError("--height/--width must be >= 16 and --iterations/--frames >= 1")
    except EdgesegError as exc:
        err_console.print(f"error: {exc}")
        return 2
    root = workspace.workdir(args.workdir)
    out_console = err_console if args.json else console
    if not out_console.is_terminal:  # logs and run_all.py: rich would wrap the tables at 80 columns
        out_console.width = max(out_console.width, 160)
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine.describe(),
        "loadavg_before": list(os.getloadavg()),
        "models": [],
        "failures": [],
    }
    for spec in specs:
        try:
            report["models"].append(run_model(spec, args, root, out_console))
        except EdgesegError as exc:  # one model failing must not lose the others' figures
            out_console.print(f"[red]{spec.text}: {exc}[/]")
            report["failures"].append({"spec": spec.text, "error": str(exc)})
    report["loadavg_after"] = list(os.getloadavg())
    if args.json_out:
        write_json(args.json_out, report)
    if args.markdown_out:
        with atomic_open(args.markdown_out, "w") as fh:
            fh.write(markdown(report))
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, console)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
