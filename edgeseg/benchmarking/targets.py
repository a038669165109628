"""The chain benchmark's targets and their honest verdicts: PASS/MISS from measured figures only,
`MISS (not measured)` where a figure is missing, no accuracy verdict for random weights."""

from __future__ import annotations

from edgeseg.defaults import MAX_MIOU_DROP
from edgeseg.metrics import drop_points

RANDOM_NOTE = "n/a (random weights)"
TARGETS = {
    "ort_vs_eager": 3.0,  # ONNX Runtime FP32 FPS / PyTorch eager FPS
    "int8_vs_fp32": 1.8,  # CPU INT8 FPS / ONNX Runtime FP32 FPS
    "int8_miou_drop": MAX_MIOU_DROP,  # mIoU points lost by CPU INT8: the build gate's limit (trained weights)
    "pipeline_vs_backend": 0.95,  # pipeline FPS / bare backend FPS
}


def _vs_one_session(pipeline: dict) -> str:
    ratio = pipeline.get("ratio_vs_one_session")
    return "" if ratio is None else f"; {ratio:.2f}x the one-session bare loop"


def _cpu_accounting(pipeline: dict) -> str:
    """Where the CPU went, when the script measured it (older JSON did not)."""
    cpu, floor = pipeline.get("cpu_ms_per_frame"), pipeline.get("stage_floor_ms")
    if not cpu or not floor:
        return ""
    bare = cpu[pipeline.get("best_bare_mode", "bare")]
    return (
        f"; CPU per frame {bare:.1f} ms bare vs {cpu['headless']:.1f} ms pipelined, of which decode + "
        f"pre + postprocess alone cost {sum(floor.values()):.1f} ms"
    )


def _best_bare(pipeline: dict) -> float:
    """The bare figure the pipeline ratio divides by (older JSON had only the one-session figure)."""
    return pipeline.get("best_bare_fps", pipeline["bare_backend_fps"])


def _first(results: list[dict], kind: str, precision: str, label_part: str = "") -> dict | None:
    for r in results:
        if r["kind"] == kind and r["precision"] == precision and label_part in r["label"] and r["fps"]:
            return r
    return None


CPU_RUNTIMES = ("onnxruntime", "openvino")


def best_cpu(results: list[dict]) -> dict | None:
    """The fastest row an ONNX runtime measured on the CPU (any precision, either runtime)."""
    rows = [r for r in results if r["kind"] in CPU_RUNTIMES and r.get("fps")]
    return max(rows, key=lambda r: r["fps"]) if rows else None


def _describe_best(row: dict) -> str:
    miou = row.get("miou_note") or (f"mIoU {row['miou']:.4f}" if row.get("miou") is not None else "")
    return f"{row['label']}, {row['fps']:.2f} FPS" + (f", {miou}" if miou else "")


def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "MISS (not measured)"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"


def gate_note(build: dict | None) -> str:
    """What `edgeseg build`'s own mIoU gate said about the CPU INT8 form (its eval images, not ours)."""
    for gate in (build or {}).get("gates", []):
        if gate["form"] == "cpu":
            kept = len(gate["excluded_nodes"])
            verdict = "passed" if gate["passed"] else "FAILED (artifact removed)"
            return (
                f"build gate {verdict}: drop {gate['drop_points']:.2f} (limit {gate['max_drop_points']:g})"
                + (f", {kept} layer(s) kept in float" if kept else "")
            )
    return ""


def ratios(
    results: list[dict], pipeline: dict | None, trained: bool, build: dict | None = None
) -> list[dict]:
    """The issue's targets, measured: value, target, PASS/MISS (never a number that was not measured)."""
    eager = _first(results, "torch", "fp32")
    fp32 = _first(results, "onnxruntime", "fp32")
    int8 = _first(results, "onnxruntime", "int8", "CPU form")
    out = []

    def add(name: str, num: dict | None, den: dict | None, key: str, detail: str) -> None:
        value = num["fps"] / den["fps"] if (num and den) else None
        # the same ratio from median latencies: less sensitive to other jobs' bursts on a shared machine
        p50 = den["latency_ms"]["p50"] / num["latency_ms"]["p50"] if value else None
        out.append(
            {
                "name": name,
                "value": value,
                "p50_ratio": p50,
                "target": f">= {TARGETS[key]}x",
                "verdict": verdict(value, TARGETS[key]),
                "detail": detail,
            }
        )

    add("ONNX Runtime FP32 vs PyTorch eager", fp32, eager, "ort_vs_eager", "FPS ratio of Segmenter.infer")
    add("CPU INT8 vs ONNX Runtime FP32", int8, fp32, "int8_vs_fp32", "FPS ratio of Segmenter.infer")
    if not trained:
        drop, result = None, RANDOM_NOTE
    elif int8 is None or fp32 is None or int8["miou"] is None or fp32["miou"] is None:
        drop, result = None, "MISS (not measured)"
    else:
        drop = drop_points(fp32["miou"], int8["miou"])
        result = verdict(drop, TARGETS["int8_miou_drop"], higher_is_better=False)
    out.append(
        {
            "name": "CPU INT8 mIoU drop (points)",
            "value": drop,
            "p50_ratio": None,
            "target": f"<= {TARGETS['int8_miou_drop']}",
            "verdict": result,
            "detail": "; ".join(
                x for x in ("on the benchmark frames", gate_note(build) if trained else "") if x
            ),
        }
    )
    best = best_cpu(results)
    out.append(
        {
            "name": "best CPU runtime vs ONNX Runtime FP32",
            "value": best["fps"] / fp32["fps"] if best and fp32 else None,
            "p50_ratio": fp32["latency_ms"]["p50"] / best["latency_ms"]["p50"] if best and fp32 else None,
            "target": "(reported)",
            "verdict": "-",
            "detail": "fastest row on the CPU: " + (_describe_best(best) if best else "none measured"),
        }
    )
    if pipeline is not None:
        value = pipeline.get("ratio")
        out.append(
            {
                "name": "pipeline vs bare backend (ORT FP32)",
                "value": value,
                "p50_ratio": pipeline.get("ratio_median_of_rounds"),
                "target": f">= {TARGETS['pipeline_vs_backend']}x",
                "verdict": verdict(value, TARGETS["pipeline_vs_backend"]),
                "detail": pipeline.get("error")
                or (
                    f"headless as `edgeseg run --video`: {pipeline['pipeline_fps']:.2f} vs "
                    f"{_best_bare(pipeline):.2f} FPS (faster bare form){_vs_one_session(pipeline)}"
                    f"{_cpu_accounting(pipeline)}, benchmarks/pipeline_vs_backend.py"
                ),
            }
        )
        if "overlay_ratio" in pipeline:
            value = pipeline["overlay_ratio"]
            out.append(
                {
                    "name": "pipeline with overlay rendering vs bare backend",
                    "value": value,
                    "p50_ratio": pipeline.get("overlay_ratio_median_of_rounds"),
                    "target": "(reported)",
                    "verdict": "-",
                    "detail": f"as for --save/--show: {pipeline['overlay_pipeline_fps']:.2f} vs "
                    f"{_best_bare(pipeline):.2f} FPS (reported, no target)",
                }
            )
    return out
