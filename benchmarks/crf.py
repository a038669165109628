"""The dense CRF (`edgeseg eval --crf`): its cost per frame on this CPU beside the net's, and what it buys.

For each held-out frame, in one loop: the net (preprocessing, ONNX Runtime / PyTorch, class map back at the
frame's size) is timed, then the CRF on the same frame's scores (resize to the frame, softmax, 10 mean-field
iterations); both class maps go into their own confusion matrix, so the two mIoU numbers are on exactly
the same frames and the two times are interleaved (a shared machine slows both alike).

    python benchmarks/crf.py [--model default] [--data synth:100] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from edgeseg.defaults import DEFAULT_EVAL_DATA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="default", help="an artifact path, or 'default' (the shipped model)"
    )
    parser.add_argument(
        "--data", default=DEFAULT_EVAL_DATA, help="dataset (default: the held-out synth scenes)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--threads", type=int, default=2, help="backend CPU threads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    from edgeseg.crf import CRFParams, refine_labels, require_crf, scores_to_frame
    from edgeseg.data import open_dataset
    from edgeseg.defaults import default_model_path
    from edgeseg.metrics import ConfusionMatrix
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.segmenter import Segmenter

    require_crf()
    path = default_model_path() if args.model == "default" else args.model
    seg = Segmenter(path, BackendOptions(threads=args.threads))
    dataset = open_dataset(args.data)
    n = min(args.limit or len(dataset), len(dataset))
    params = CRFParams()
    plain_cm, crf_cm = ConfusionMatrix(seg.card.num_classes), ConfusionMatrix(seg.card.num_classes)
    net_s, crf_s, sizes = [], [], set()
    for i in range(n):
        rgb, mask = dataset[i]
        frame = np.ascontiguousarray(rgb[:, :, ::-1])
        sizes.add(frame.shape[:2])
        t0 = time.perf_counter()
        batch, geom = seg.preprocess(frame)
        labels, logits = seg.net_labels(seg.backend.run(batch))
        plain = seg.to_frame(labels, geom)
        t1 = time.perf_counter()
        refined = refine_labels(frame, scores_to_frame(logits, geom), params)
        t2 = time.perf_counter()
        if i > 0:  # the first frame warms up ONNX Runtime's arenas
            net_s.append(t1 - t0)
            crf_s.append(t2 - t1)
        plain_cm.update(plain, mask)
        crf_cm.update(refined, mask)
    plain_m, crf_m = plain_cm.compute(), crf_cm.compute()
    result = {
        "model": str(path),
        "data": args.data,
        "images": n,
        "frame_sizes": sorted(f"{h}x{w}" for h, w in sizes),
        "threads": args.threads,
        "net_ms_median": round(1000 * float(np.median(net_s)), 1),
        "crf_ms_median": round(1000 * float(np.median(crf_s)), 1),
        "crf_over_net": round(float(np.median(crf_s)) / float(np.median(net_s)), 1),
        "miou": round(plain_m.miou, 4),
        "miou_crf": round(crf_m.miou, 4),
        "pixel_accuracy": round(plain_m.pixel_accuracy, 4),
        "pixel_accuracy_crf": round(crf_m.pixel_accuracy, 4),
        "iou": dict(zip(seg.classes, (round(float(v), 4) for v in plain_m.iou))),
        "iou_crf": dict(zip(seg.classes, (round(float(v), 4) for v in crf_m.iou))),
        "crf_params": params.to_dict(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['model']} on {args.data}: {n} frames of {', '.join(result['frame_sizes'])}, {args.threads} threads"
    )
    print(f"per frame (median): net {result['net_ms_median']} ms, CRF {result['crf_ms_median']} ms "
          f"({result['crf_over_net']}x the net)")  # fmt: skip
    print(f"mIoU {result['miou']:.4f} -> {result['miou_crf']:.4f} with the CRF; "
          f"pixel accuracy {result['pixel_accuracy']:.4f} -> {result['pixel_accuracy_crf']:.4f}")  # fmt: skip
    for name in seg.classes:
        print(f"  {name:14s} IoU {result['iou'][name]:.4f} -> {result['iou_crf'][name]:.4f}")


if __name__ == "__main__":
    main()
