#!/usr/bin/env python3
"""`make gpu-check`: the TensorRT path on a real GPU, in one run, wherever a GPU appears.

Everything edgeseg's TensorRT code does has only met fakes (tests/fake_tensorrt); this script is what
turns it into measured fact. On a machine with a CUDA GPU and TensorRT it builds, runs and scores:

  - FP32, FP16 and INT8 (Q/DQ, gated) engines of the shipped default model, each scored with mIoU on
    the same held-out frames as the ONNX Runtime FP32 reference (and its pixel agreement with it);
  - a version-compatible engine (8.6+), loaded back;
  - a timing-cache round trip (the second build reuses the first build's cache);
  - the legacy implicit-INT8 calibrator on a dynamic-shape ONNX (where the version has it);
  - the FP32 engine through every installed CUDA binding (cuda-python, pycuda), same output;
  - `edgeseg run`'s pipeline with two workers on one engine;
  - a dynamic-shape engine built for two workers (a profile each on 8.5, shared on 8.6+), both workers
    running at once at different shapes, against ONNX Runtime;
  - the labels output (ArgMax -> Cast) as INT32 and as UINT8 (built as INT32), against ONNX Runtime;
  - an FCN (ConvTranspose upsampling) INT8 engine's agreement with FP32 ONNX Runtime: it settles which
    per-channel axis this TensorRT reads ConvTranspose weight scales on (needs torch to export FCN);
  - an engine built by the printed trtexec line (if trtexec is on PATH), version-compatible where the
    version has it, loaded without a sidecar;
  - frames per second of each engine (double-buffered, batch 1);

and writes one JSON report (`--out`). Exit code 0 when every check passed, 1 otherwise. Elsewhere
(no TensorRT, no GPU) it prints one "no GPU" line and exits 0, so CI and laptops can call it.

    python tools/gpu_check.py --out gpu-check.json [--frames 32] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.defaults import CALIB_IMAGES
from edgeseg.errors import first_line


def unavailable() -> str | None:
    """Why there is nothing to check here (no TensorRT / no GPU), or None."""
    from edgeseg.export.tensorrt_build import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


class Report:
    """Check results in order; each check records its own figures or the one-line error that stopped it."""

    def __init__(self) -> None:
        self.checks: dict[str, dict[str, Any]] = {}

    def run(self, name: str, fn: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        start = time.perf_counter()
        try:
            out = fn() or {}
        except Exception as exc:  # a failed check is recorded, the others still run
            first = first_line(exc)
            self.checks[name] = {"ok": False, "error": first, "trace": traceback.format_exc(limit=3)}
            print(f"FAIL {name}: {first}", flush=True)
            return None
        if out.get("skipped"):
            self.checks[name] = {"ok": True, **out}
            print(f"skip {name}: {out['skipped']}", flush=True)
            return out
        self.checks[name] = {"ok": True, "seconds": round(time.perf_counter() - start, 2), **out}
        print(f"ok   {name}", flush=True)
        return out

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks.values())


def _frames(card: Any, n: int) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    import cv2

    from edgeseg.calib.gate import open_eval_data

    data = open_eval_data(f"synth:{n}", card, n)
    return [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in data.images], data.masks


def _score(path: Path, frames: list, masks: list, ref: list | None, card: Any) -> dict:
    """mIoU on the frames, agreement with the reference labels, FPS of the backend alone."""
    from edgeseg.metrics import ConfusionMatrix
    from edgeseg.runtime.segmenter import Segmenter

    cm = ConfusionMatrix(card.num_classes)
    labels = []
    with Segmenter(path) as seg:
        for frame, mask in zip(frames, masks):
            out = seg.infer(frame)
            labels.append(out)
            if mask is not None:
                cm.update(out, mask)
        batch, _ = seg.preprocess(frames[0])
        backend = seg.backend
        run_many = getattr(backend, "run_pipelined", None)
        n = max(len(frames), 4)
        start = time.perf_counter()
        if run_many is not None:
            for _ in run_many([batch] * n):
                pass
        else:
            for _ in range(n):
                backend.run(batch)
        fps = n / (time.perf_counter() - start)
    agreement = None
    if ref is not None:
        agreement = float(np.mean([np.mean(a == b) for a, b in zip(labels, ref)]))
    miou = cm.compute().miou
    return {
        "miou": None if miou != miou else round(miou, 5),  # 0..1, as every edgeseg report
        "agreement_with_fp32_onnxruntime": agreement,
        "fps_backend_batch1": round(fps, 1),
        "_labels": labels,
    }


def _public(d: dict | None) -> dict:
    return {k: v for k, v in (d or {}).items() if not k.startswith("_")}


def _dynamic_net(path: Path) -> Path:
    """A small conv net with dynamic N/H/W (the default model's resizes are fixed-size)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.card import ModelCard, default_palette

    rng = np.random.default_rng(0)
    inits, nodes, prev = [], [], "input"
    for i, (cin, cout, k) in enumerate([(3, 16, 3), (16, 16, 3), (16, 5, 1)]):
        w = (rng.normal(size=(cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}"),
        ]
        out = "logits" if i == 2 else f"c{i}"
        nodes.append(
            helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [out], pads=[k // 2] * 4, name=f"conv{i}")
        )
        if i < 2:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"relu{i}"))
            out = f"r{i}"
        prev = out
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5, "H", "W"])
    model = helper.make_model(
        helper.make_graph(nodes, "dyn", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    card = ModelCard(model="dyn", classes=[f"c{i}" for i in range(5)], palette=default_palette(5),
                     input_size=(128, 256), dynamic=True, dynamic_batch=True)  # fmt: skip
    for k, v in card.to_metadata_props().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, path)
    return path


def check(
    workdir: Path, frames_n: int, calib_images: int = CALIB_IMAGES, report: Report | None = None
) -> Report:
    from edgeseg.artifacts import read_card
    from edgeseg.build import BuildOptions, build
    from edgeseg.defaults import default_model_path
    from edgeseg.export.fp16 import write_fp16
    from edgeseg.export.tensorrt_build import build_engine
    from edgeseg.export.tensorrt_features import detect
    from edgeseg.export.tensorrt_plan import EngineOptions
    from edgeseg.lazy import require
    from edgeseg.runtime.cuda_mem import available_bindings, gpu_info

    report = report if report is not None else Report()
    trt = require("tensorrt")
    features = detect(trt)
    gpu = gpu_info()
    report.checks["environment"] = {
        "ok": True,
        "tensorrt": features.version,
        "features": features.to_dict(),
        "gpu": gpu.to_dict() if gpu else None,
        "cuda_bindings": available_bindings(),
    }
    onnx_path = workdir / "edgeseg-default.onnx"
    shutil.copy(default_model_path("onnx"), onnx_path)
    card = read_card(onnx_path)
    frames, masks = _frames(card, frames_n)
    cache = workdir / "timing.cache"
    engines: dict[str, Path] = {}

    ref = report.run("fp32_onnxruntime_reference", lambda: _score(onnx_path, frames, masks, None, card))
    ref_labels = (ref or {}).get("_labels")

    def engine(name: str, source: Path, opts: EngineOptions) -> dict:
        path = workdir / f"edgeseg-default.{name}.engine"
        result = build_engine(source, path, opts, card=card)
        engines[name] = path
        scored = _score(path, frames, masks, ref_labels, card)
        return {"build_seconds": result.info["build_seconds"], "flags": result.plan.to_dict(), **scored}

    report.run("fp32_engine", lambda: engine("fp32", onnx_path, EngineOptions(timing_cache=cache)))

    def timing_cache() -> dict:
        result = build_engine(
            onnx_path, workdir / "again.engine", EngineOptions(timing_cache=cache), card=card
        )
        if not result.info["timing_cache_reused"]:
            raise RuntimeError("the second build did not reuse the timing cache")
        return {"rebuild_seconds": result.info["build_seconds"]}

    report.run("timing_cache_round_trip", timing_cache)
    report.run(
        "fp16_engine",
        lambda: engine(
            "fp16", write_fp16(onnx_path, card=card)[0], EngineOptions(precision="fp16", timing_cache=cache)
        ),
    )

    def int8() -> dict:
        opts = BuildOptions(target="tensorrt", int8=True, calib_images=calib_images, eval_images=frames_n,
                            engine=EngineOptions(precision="int8", timing_cache=cache))  # fmt: skip
        result = build(onnx_path, opts)
        if result.failure is not None:
            raise RuntimeError(str(result.failure))
        engines["int8"] = result.engine.engine
        scored = _score(result.engine.engine, frames, masks, ref_labels, card)
        gate = result.gates[0].to_dict(card.classes) if result.gates else {}
        return {
            "gate_onnxruntime": {k: gate.get(k) for k in ("int8_miou", "drop_points", "passed")},
            **scored,
        }

    report.run("int8_qdq_engine", int8)

    def version_compatible() -> dict:
        if not features.version_compatible:
            return {"skipped": f"TensorRT {features.version} has no version-compatible engines"}
        return engine("vc", onnx_path, EngineOptions(version_compatible=True, timing_cache=cache))

    report.run("version_compatible_engine", version_compatible)
    _device_checks(report, workdir, onnx_path, card, frames, frames_n, calib_images, features, engines)
    return report


def _device_checks(
    report: Report,
    workdir: Path,
    onnx_path: Path,
    card: Any,
    frames: list[np.ndarray],
    frames_n: int,
    calib_images: int,
    features: Any,
    engines: dict[str, Path],
) -> None:
    """The checks after the engines are built: the implicit calibrator, both CUDA bindings, two
    workers on one engine, labels output, FCN's INT8 ConvTranspose, trtexec's engine."""
    from edgeseg.export.tensorrt_build import build_engine
    from edgeseg.export.tensorrt_plan import EngineOptions
    from edgeseg.runtime.cuda_mem import available_bindings

    def legacy() -> dict:
        if not (features.legacy_calibrator and features.int8_flag):
            return {"skipped": f"TensorRT {features.version} has no implicit calibrator"}
        dyn = _dynamic_net(workdir / "dyn.onnx")
        rng = np.random.default_rng(0)
        batches = [rng.normal(size=(1, 3, 128, 256)).astype(np.float32) for _ in range(8)]
        opts = EngineOptions(precision="int8", legacy_calibrator=True, calibration_batches=lambda: batches,
                             calibration_cache=workdir / "dyn.calib")  # fmt: skip
        result = build_engine(dyn, workdir / "dyn.int8-legacy.engine", opts)
        return {"calibration_batches": result.info["calibration_batches"], "flags": result.plan.to_dict()}

    report.run("legacy_calibrator_dynamic_onnx", legacy)

    def bindings() -> dict:
        if "fp32" not in engines:
            raise RuntimeError("no FP32 engine to run")
        from edgeseg.runtime.backends import BackendOptions
        from edgeseg.runtime.backends.tensorrt import TensorRTBackend

        batch = np.random.default_rng(1).normal(size=(1, 3, *card.input_size)).astype(np.float32)
        outs = {}
        for name in available_bindings():
            with TensorRTBackend(engines["fp32"], BackendOptions(cuda=name)) as backend:
                outs[name] = backend.run(batch)
        if len(outs) > 1:
            a, b = outs.values()
            if not np.allclose(a, b, rtol=1e-4, atol=1e-4):
                raise RuntimeError("cuda-python and pycuda gave different outputs")
        return {"bindings": sorted(outs)}

    report.run("cuda_bindings", bindings)

    def two_workers() -> dict:
        from edgeseg.runtime.plan import RunPlan

        path = engines.get("fp16") or engines["fp32"]
        n = max(frames_n, 4)
        plan = RunPlan(
            model=path, sources=({"synthetic": n},), synthetic_size=tuple(card.input_size), workers=2
        )
        run = plan.open()  # as `edgeseg run --workers 2` opens it
        stats = run.driver.run()
        if stats.processed != n:
            raise RuntimeError(f"the pipeline processed {stats.processed} of {n} frames")
        return {"engine": path.name, "report": run.report().to_dict()}

    report.run("pipeline_two_workers_one_engine", two_workers)
    report.run("dynamic_engine_two_workers", lambda: _dynamic_two_workers(workdir))
    report.run("labels_output", lambda: _labels_output(workdir, onnx_path, card, frames))
    report.run("fcn_int8_convtranspose", lambda: _fcn_int8(workdir, frames_n, calib_images, features))
    report.run("trtexec_engine", lambda: _trtexec_engine(workdir, onnx_path, card, frames, features))


def _against_onnxruntime(engine: Path, onnx_path: Path, batches: list[np.ndarray], card: Any) -> float:
    """Largest |engine - ONNX Runtime FP32| over `batches` (labels: the fraction of pixels that differ)."""
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend

    worst = 0.0
    with (
        TensorRTBackend(engine, BackendOptions(card=card)) as trt_backend,
        OnnxRuntimeBackend(onnx_path) as ref,
    ):
        for batch in batches:
            got, want = trt_backend.run(batch), ref.run(batch)
            if got.shape != want.shape:
                raise RuntimeError(f"engine output {got.shape} vs ONNX Runtime {want.shape}")
            if np.issubdtype(want.dtype, np.integer):
                worst = max(worst, float(np.mean(got.astype(np.int64) != want.astype(np.int64))))
            else:
                worst = max(worst, float(np.abs(got - want).max()))
    return worst


def _dynamic_two_workers(workdir: Path) -> dict:
    """Two workers on one dynamic-shape engine at once (each needs its own profile on TensorRT 8.5)."""
    import threading

    from edgeseg.export.tensorrt_build import build_engine
    from edgeseg.export.tensorrt_plan import EngineOptions
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from edgeseg.runtime.backends.tensorrt import TensorRTBackend

    dyn = _dynamic_net(workdir / "dyn2.onnx")
    shapes = {"min_shape": (1, 3, 64, 64), "opt_shape": (1, 3, 128, 256), "max_shape": (2, 3, 256, 512)}
    result = build_engine(dyn, workdir / "dyn2.fp32.engine", EngineOptions(workers=2, **shapes))
    rng = np.random.default_rng(2)
    jobs = [[rng.normal(size=s).astype(np.float32) for s in [(1, 3, 128, 256), (2, 3, 64, 128), (1, 3, 256, 512)]]
            for _ in range(2)]  # fmt: skip
    outs: dict[int, list[np.ndarray]] = {}
    errors: list[str] = []
    first = TensorRTBackend(result.engine)
    second = first.spawn()

    def work(k: int, backend: TensorRTBackend) -> None:
        backend.activate()
        try:
            outs[k] = [backend.run(b) for b in jobs[k]]
        except Exception as exc:  # reported in the check's error
            errors.append(first_line(exc))
        finally:
            backend.deactivate()

    try:
        threads = [threading.Thread(target=work, args=(k, b)) for k, b in enumerate((first, second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        second.close()
        first.close()
    if errors:
        raise RuntimeError(errors[0])
    worst = 0.0
    with OnnxRuntimeBackend(dyn) as ref:
        for k in (0, 1):
            for batch, out in zip(jobs[k], outs[k]):
                worst = max(worst, float(np.abs(out - ref.run(batch)).max()))
    if worst > 1e-2:
        raise RuntimeError(f"two workers differ from ONNX Runtime by {worst:.3g}")
    return {
        "optimization_profiles": result.info["optimization_profiles"],
        "profile_sharing": result.info["profile_sharing"],
        "max_abs_diff": worst,
    }


def _labels_model(onnx_path: Path, out: Path, to: int) -> Path:
    """The default model with `edgeseg export --output labels`' tail: ArgMax over classes -> Cast(to)."""
    import onnx
    from onnx import helper

    model = onnx.load(onnx_path)
    graph = model.graph
    logits = graph.output[0]
    dims = [d.dim_value for d in logits.type.tensor_type.shape.dim]
    graph.node.extend(
        [
            helper.make_node("ArgMax", [logits.name], ["argmax"], name="argmax", axis=1, keepdims=0),
            helper.make_node("Cast", ["argmax"], ["labels"], name="to_labels", to=to),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("labels", to, [dims[0], dims[2], dims[3]]))
    onnx.save(model, out)
    return out


def _labels_output(workdir: Path, onnx_path: Path, card: Any, frames: list) -> dict:
    from onnx import TensorProto

    from edgeseg.export.tensorrt_build import build_engine
    from edgeseg.export.tensorrt_plan import EngineOptions
    from edgeseg.runtime.segmenter import Segmenter

    with Segmenter(onnx_path) as seg:
        batches = [seg.preprocess(f)[0] for f in frames[:4]]
    out = {}
    for name, to in (("int32", TensorProto.INT32), ("uint8", TensorProto.UINT8)):
        model = _labels_model(onnx_path, workdir / f"labels-{name}.onnx", to)
        result = build_engine(model, workdir / f"labels-{name}.engine", EngineOptions(), card=card)
        differ = _against_onnxruntime(result.engine, model, batches, card)
        if differ > 0.001:
            raise RuntimeError(f"{name} labels differ from ONNX Runtime on {100 * differ:.2f}% of pixels")
        out[name] = {"pixels_differing": differ, "notes": result.plan.notes}
    return out


def _fcn_int8(workdir: Path, frames_n: int, calib_images: int, features: Any) -> dict:
    """FCN-8s-lite (two learned ConvTranspose upsamplers), untrained, built INT8 through the Q/DQ path."""
    from edgeseg.lazy import available

    if not available("torch"):
        return {"skipped": "exporting FCN needs torch (pip install 'edgeseg[train]')"}
    from edgeseg.build import BuildOptions, build
    from edgeseg.card import ModelCard, default_palette
    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.export.onnx_export import export_onnx
    from edgeseg.export.tensorrt_plan import EngineOptions
    from edgeseg.models import create_model

    classes = list(SYNTH_CLASSES)
    net = create_model("fcn8s_lite", num_classes=len(classes))
    card = ModelCard(
        model="fcn8s_lite", classes=classes, palette=default_palette(len(classes)), input_size=(128, 256)
    )
    onnx_path = workdir / "fcn" / "fcn8s_lite.onnx"
    export_onnx(net, onnx_path, card, parity_scenes=1)
    opts = BuildOptions(target="tensorrt", int8=True, calib_images=calib_images, eval_images=frames_n,
                        max_miou_drop=100.0, engine=EngineOptions(precision="int8"))  # fmt: skip
    result = build(onnx_path, opts)
    if result.failure is not None:
        raise RuntimeError(str(result.failure))
    frames, masks = _frames(card, frames_n)
    ref = _score(onnx_path, frames, masks, None, card)
    scored = _score(result.engine.engine, frames, masks, ref["_labels"], card)
    return {
        "convtranspose_weight_axis": features.convtranspose_weight_axis,
        "notes": result.engine.plan.notes,
        **scored,
    }


def _trtexec_engine(workdir: Path, onnx_path: Path, card: Any, frames: list, features: Any) -> dict:
    """The hand-off's trtexec line for this version, run as printed, and its engine loaded sidecar-less."""
    import shlex
    import subprocess

    from edgeseg.export.tensorrt_plan import EngineOptions, handoff_commands, inspect_onnx
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.segmenter import Segmenter

    exe = shutil.which("trtexec") or next(
        (
            p
            for p in ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
            if Path(p).is_file()
        ),
        None,
    )
    if exe is None:
        return {"skipped": "no trtexec on PATH (JetPack: /usr/src/tensorrt/bin/trtexec)"}
    import onnx

    folder = workdir / "trtexec"
    folder.mkdir(exist_ok=True)
    model = folder / "model.onnx"
    shutil.copy(onnx_path, model)
    engine = folder / "model.fp32.engine"
    options = EngineOptions(version_compatible=features.version_compatible)
    commands, _ = handoff_commands(model, engine, options, {}, inspect_onnx(onnx.load(model)))
    major = features.version.split(".")[0]
    key = {"8": "trtexec_8_6" if "trtexec_8_6" in commands else "trtexec_8", "10": "trtexec_10"}.get(
        major, "trtexec_11"
    )
    argv = shlex.split(commands[key])
    argv[0] = exe
    done = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 or not engine.is_file():
        tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{commands[key]} failed: {tail[0]}")
    labels = []
    with Segmenter(engine, BackendOptions(card=card)) as seg, Segmenter(onnx_path) as ref:
        for frame in frames[:4]:
            labels.append(float(np.mean(seg.infer(frame) == ref.infer(frame))))
    return {"command": commands[key], "version_compatible": options.version_compatible,
            "agreement_with_fp32_onnxruntime": float(np.mean(labels))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu-check.json"), help="the JSON report")
    ap.add_argument("--frames", type=int, default=32, help="held-out frames scored per engine")
    ap.add_argument("--workdir", type=Path, default=None, help="where engines go (default: a temp folder)")
    ap.add_argument(
        "--calib-images", type=int, default=CALIB_IMAGES, help="calibration images for the INT8 engine"
    )
    args = ap.parse_args(argv)
    reason = unavailable()
    if reason is not None:
        print(f"gpu-check: no GPU to check here ({reason}); nothing was run")
        return 0
    from edgeseg.atomic import write_json

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeseg-gpu-check-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = Report()
        try:
            check(workdir, args.frames, args.calib_images, report)
        except Exception as exc:  # the set-up failed (a check's own failure is recorded by Report.run)
            first = first_line(exc)
            report.checks["setup"] = {"ok": False, "error": first, "trace": traceback.format_exc(limit=3)}
            print(f"FAIL setup: {first}", flush=True)
    doc = {
        "ok": report.ok,
        "seconds": round(time.perf_counter() - start, 1),
        "checks": {k: _public(v) for k, v in report.checks.items()},
    }
    write_json(args.out, doc)
    print(f"gpu-check: {'all checks passed' if report.ok else 'FAILED'}; report in {args.out}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
