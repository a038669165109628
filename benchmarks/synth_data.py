"""The scene generator's three numbers: render speed, the colour-lookup baseline, learnability.

    .venv/bin/python benchmarks/synth_data.py                       # speed + colour baseline (~1 min)
    .venv/bin/python benchmarks/synth_data.py --train-seconds 2400  # + train a small CNN (docs/data.md)

- speed: ms per scene (min / median over --scenes renders, one thread) at --size;
- colour baseline: mIoU on held-out scenes of the best per-pixel colour -> class lookup fitted on
  training scenes (how far colour alone gets; low means texture/shape/context are needed);
- learnability: a 0.93M-parameter encoder-decoder trained from scratch on CPU for a wall-clock
  budget at --train-size, evaluated on held-out scenes (seed 1000003) every 300 steps.

Figures are only as good as the machine was quiet: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from edgeseg.data.synth import HELDOUT_SEED, SYNTH_CLASSES, TRAIN_SEED, SceneGenerator
from edgeseg.metrics import ConfusionMatrix


def _size(text: str) -> tuple[int, int]:
    h, w = (int(v) for v in text.lower().split("x"))
    return h, w


def render_speed(size: tuple[int, int], scenes: int) -> dict[str, float]:
    gen = SceneGenerator(*size, seed=TRAIN_SEED)
    gen.scene(0)
    times = []
    for i in range(scenes):
        t = time.perf_counter()
        gen.scene(i)
        times.append((time.perf_counter() - t) * 1e3)
    return {"min_ms": min(times), "median_ms": statistics.median(times)}


def colour_baseline(size: tuple[int, int], fit: int, test: int, bins: int = 16) -> ConfusionMatrix:
    train, held_out = SceneGenerator(*size, seed=TRAIN_SEED), SceneGenerator(*size, seed=HELDOUT_SEED)

    def quantise(rgb: np.ndarray) -> np.ndarray:
        v = (rgb // (256 // bins)).astype(np.int64)
        return (v[..., 0] * bins + v[..., 1]) * bins + v[..., 2]

    votes = np.zeros((bins**3, len(SYNTH_CLASSES)), np.int64)
    for i in range(fit):
        rgb, mask = train.scene(i)
        np.add.at(votes, (quantise(rgb).ravel(), mask.ravel()), 1)
    lut = votes.argmax(1).astype(np.uint8)
    cm = ConfusionMatrix(len(SYNTH_CLASSES))
    for i in range(test):
        rgb, mask = held_out.scene(i)
        cm.update(lut[quantise(rgb)], mask)
    return cm


def learnability(size: tuple[int, int], seconds: float, scenes: int, test: int) -> None:
    import torch
    from torch import nn
    from torch.nn import functional as F

    from edgeseg.data import open_dataset
    from edgeseg.data.torch_dataset import SegmentationTorchDataset

    torch.set_num_threads(1)
    torch.manual_seed(0)

    def block(i: int, o: int, s: int = 1, d: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, 3, s, d, dilation=d, bias=False), nn.BatchNorm2d(o), nn.ReLU())

    class Net(nn.Module):
        def __init__(self, classes: int) -> None:
            super().__init__()
            self.e1 = nn.Sequential(block(3, 24, 2), block(24, 24))
            self.e2 = nn.Sequential(block(24, 48, 2), block(48, 48))
            self.e3 = nn.Sequential(block(48, 96, 2), block(96, 96), block(96, 96, d=2))
            self.e4 = nn.Sequential(block(96, 128, 2), block(128, 128, d=2), block(128, 128, d=4))
            self.d3, self.d2, self.d1 = block(224, 96), block(144, 48), block(72, 32)
            self.head = nn.Conv2d(32, classes, 1)

        def forward(self, x):
            def up(t, ref):
                return F.interpolate(t, size=ref.shape[-2:], mode="bilinear", align_corners=False)

            a = self.e1(x)
            b = self.e2(a)
            c = self.e3(b)
            d = self.e4(c)
            c = self.d3(torch.cat([up(d, c), c], 1))
            b = self.d2(torch.cat([up(c, b), b], 1))
            a = self.d1(torch.cat([up(b, a), a], 1))
            return up(self.head(a), x)

    h, w = size
    train = SegmentationTorchDataset(open_dataset(f"synth:{scenes}@{h}x{w}", split="train"), size)
    held_out = open_dataset(f"synth:{test}@{h}x{w}")
    t0 = time.time()
    items = [train[i] for i in range(len(train))]
    xs, ys = torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
    print(f"rendered {scenes} training scenes in {time.time() - t0:.0f} s")
    net = Net(len(SYNTH_CLASSES))
    print(f"params {sum(p.numel() for p in net.parameters()):,}")
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-4)
    val_x = torch.stack([torch.from_numpy(train.normalize(held_out[i][0])) for i in range(test)])
    val_y = [held_out[i][1] for i in range(test)]

    def evaluate():
        net.eval()
        cm = ConfusionMatrix(len(SYNTH_CLASSES))
        with torch.no_grad():
            for k in range(0, test, 20):
                pred = net(val_x[k : k + 20]).argmax(1).numpy().astype(np.uint8)
                for j, p in enumerate(pred):
                    cm.update(p, val_y[k + j])
        net.train()
        return cm.compute()

    gen = torch.Generator().manual_seed(0)
    step, t0 = 0, time.time()
    while time.time() - t0 < seconds:
        idx = torch.randint(0, len(xs), (8,), generator=gen)
        x, y = xs[idx], ys[idx]
        flip = torch.rand(8, generator=gen) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        for g in opt.param_groups:
            g["lr"] = 3e-3 * max(0.0, 1 - (time.time() - t0) / seconds) ** 0.9
        loss = F.cross_entropy(net(x), y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 300 == 0:
            _print_metrics(f"step {step} ({time.time() - t0:.0f} s) loss {loss.item():.3f}", evaluate())
    _print_metrics(f"final step {step}", evaluate())


def _print_metrics(prefix: str, m) -> None:
    per_class = " ".join(f"{n}={v:.2f}" for n, v in zip(SYNTH_CLASSES, m.iou))
    print(f"{prefix}: held-out mIoU {m.miou:.3f}  {per_class}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=_size, default=(256, 512), help="render-speed size HxW")
    ap.add_argument("--scenes", type=int, default=40, help="scenes timed")
    ap.add_argument("--train-seconds", type=float, default=0, help="learnability budget (0 = skip)")
    ap.add_argument("--train-size", type=_size, default=(96, 192))
    ap.add_argument("--train-scenes", type=int, default=1500)
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    speed = render_speed(args.size, args.scenes)
    print(
        f"render {args.size[0]}x{args.size[1]}: {speed['min_ms']:.1f} ms min, {speed['median_ms']:.1f} ms median"
    )
    m = colour_baseline((96, 192), fit=300, test=60).compute()
    _print_metrics("best per-pixel colour lookup (fit on 300 scenes, 96x192)", m)
    if args.train_seconds > 0:
        learnability(args.train_size, args.train_seconds, args.train_scenes, test=60)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
