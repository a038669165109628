"""How close ONNX Runtime FP32 and PyTorch eager run to this CPU's FP32 compute ceiling.

The "ORT FP32 >= 3x PyTorch eager" target can only be met if eager wastes two thirds of the CPU. This
prints, side by side in one run: the machine's FP32 ceiling (a 4096x4096 matrix product in ONNX
Runtime and in PyTorch), and for the shipped default model the achieved GFLOP/s of ORT FP32 and of
eager on the same input (FLOPs counted by torch.utils.flop_counter: 2 per multiply-accumulate of
convolutions), so the ratio eager would need for 3x can be compared with what the cores can do.

    python benchmarks/fp32_ceiling.py [--threads 2] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def median_seconds(fn, repeats: int) -> float:
    fn()
    fn()  # warm-up: arenas, thread pools, weight layout caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def sgemm_gflops(threads: int, repeats: int, n: int = 4096) -> dict[str, float]:
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["C"])],
        "sgemm",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in ("A", "B")],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flops, runs = 2 * n**3, max(3, repeats // 4)
    ort_s = median_seconds(lambda: sess.run(None, {"A": a, "B": b}), runs)
    torch_s = median_seconds(lambda: ta @ tb, runs)
    return {"onnxruntime": flops / ort_s / 1e9, "torch": flops / torch_s / 1e9}


def default_model_gflops(threads: int, repeats: int) -> dict[str, float]:
    import onnxruntime as ort
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgeseg.checkpoint import model_from_checkpoint
    from edgeseg.defaults import default_model_path

    model, card = model_from_checkpoint(default_model_path("pt"))
    model = model.float().eval()
    x = torch.randn(1, 3, *card.input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(x)
    flops = counter.get_total_flops()
    torch.set_num_threads(threads)

    def eager() -> None:
        with torch.inference_mode():
            model(x)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(default_model_path("onnx")), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    feed = {name: x.numpy()}
    eager_s = median_seconds(eager, repeats)
    ort_s = median_seconds(lambda: sess.run(None, feed), repeats)
    return {"gflop": flops / 1e9, "eager_ms": eager_s * 1e3, "ort_ms": ort_s * 1e3,
            "eager_gflops": flops / eager_s / 1e9, "ort_gflops": flops / ort_s / 1e9}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    peak = sgemm_gflops(args.threads, args.repeats)
    net = default_model_gflops(args.threads, args.repeats)
    print(f"FP32 ceiling, 4096^3 sgemm, {args.threads} threads: ONNX Runtime {peak['onnxruntime']:.0f} GFLOP/s, "
          f"PyTorch {peak['torch']:.0f} GFLOP/s")  # fmt: skip
    print(f"default model ({net['gflop']:.2f} GFLOP per frame, forward pass only, median of {args.repeats}):")
    print(f"  PyTorch eager     {net['eager_ms']:7.1f} ms  {net['eager_gflops']:6.0f} GFLOP/s")
    print(f"  ONNX Runtime FP32 {net['ort_ms']:7.1f} ms  {net['ort_gflops']:6.0f} GFLOP/s  "
          f"({net['eager_ms'] / net['ort_ms']:.2f}x eager)")  # fmt: skip
    need = 3 * net["eager_gflops"]
    ceiling = max(peak.values())
    print(f"  3x eager would need {need:.0f} GFLOP/s = {need / ceiling:.2f}x the sgemm ceiling")


if __name__ == "__main__":
    main()
