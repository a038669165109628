"""`edgeseg.export`: PyTorch -> ONNX with metadata, parity, labels output, dynamic shapes, atomicity.

A tiny net defined here exercises the graph features the zoo relies on (AdaptiveAvgPool(1), bilinear
resizes with both align_corners settings, dilated conv); the zoo itself is covered in
test_export_zoo.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from edgeseg.card import ModelCard, default_palette  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.export import graph  # noqa: E402
from edgeseg.export.onnx_export import ExportCheckError, export_onnx  # noqa: E402

torch.set_num_threads(1)
NUM_CLASSES = 5


class TinySeg(nn.Module):
    """Stride-4 encoder, global-context branch (AdaptiveAvgPool(1) + bilinear), bilinear decoder."""

    def __init__(self, num_classes: int = NUM_CLASSES, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(
            nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 2, dilation=2), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.ctx = nn.Conv2d(16, 16, 1)
        self.head = nn.Conv2d(32, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        f = self.body(self.stem(x))
        g = F.interpolate(self.ctx(self.pool(f)), size=f.shape[-2:], mode="bilinear", align_corners=False)
        y = self.head(torch.cat([f, g], 1))
        return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=self.align_corners)


def make_card(size=(48, 64)) -> ModelCard:
    return ModelCard(
        model="tinyseg",
        classes=[f"class{i}" for i in range(NUM_CLASSES)],
        palette=default_palette(NUM_CLASSES),
        input_size=size,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
    )


def frames(n: int = 2, size=(48, 64), seed: int = 0) -> list[np.ndarray]:
    """Smooth random BGR frames (real-looking enough, never zeros)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, size=(size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
        out.append(cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC))
    return out


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.normal_(p, std=0.5)
    return module.eval()


@pytest.fixture
def net() -> nn.Module:
    torch.manual_seed(0)
    return TinySeg().eval()


def do_export(net, tmp_path: Path, name: str = "tinyseg", **kw):
    kw.setdefault("parity_frames", frames(2, kw.get("card", make_card()).input_size))
    card = kw.pop("card", make_card())
    return export_onnx(net, tmp_path / name / f"{name}.onnx", card, **kw)


def test_export_writes_onnx_card_and_metadata_roundtrip(net, tmp_path):
    from edgeseg.runtime.segmenter import Segmenter

    res = do_export(net, tmp_path)
    assert res.written and res.path.is_file() and res.card_path.is_file()
    assert res.parity is not None and res.parity.passed and res.parity.agreement >= 0.999
    assert res.parity.max_abs_diff is not None and res.parity.max_abs_diff < 1e-3

    seg = Segmenter(res.path)
    assert seg.classes == [f"class{i}" for i in range(NUM_CLASSES)]
    assert seg.palette == default_palette(NUM_CLASSES)
    assert seg.card.mean == pytest.approx((0.5, 0.4, 0.3)) and seg.card.std == pytest.approx((0.2, 0.25, 0.3))
    assert seg.card.input_size == (48, 64) and seg.card.output == "logits" and seg.card.precision == "fp32"
    assert seg.card.extra["export"]["exporter"] == "torchscript" and seg.card.extra["export"]["opset"] == 17
    assert ModelCard.load_json(res.card_path).to_dict() == seg.card.to_dict()
    labels = seg.infer(frames(1, (70, 90))[0])
    assert labels.shape == (70, 90) and labels.max() < NUM_CLASSES


def test_graph_is_tensorrt_friendly(net, tmp_path):
    """AdaptiveAvgPool(1) -> GlobalAveragePool, Resize by `sizes` with PyTorch's coordinate modes."""
    net = TinySeg(align_corners=True).eval()
    res = do_export(net, tmp_path)
    model = graph.load_onnx(res.path)
    ops = graph.op_counts(model)
    assert ops.get("GlobalAveragePool") == 1 and "ReduceMean" not in ops
    assert "BatchNormalization" not in ops  # folded into the conv by the exporter
    resizes = [n for n in model.graph.node if n.op_type == "Resize"]
    modes = sorted(graph.attributes(n)["coordinate_transformation_mode"] for n in resizes)
    assert modes == ["align_corners", "half_pixel"]
    assert all(len(n.input) == 4 and n.input[3] and not n.input[2] for n in resizes)  # sizes, not scales
    assert graph.opset_version(model) == 17
    assert res.trt is not None and res.trt.ok
    assert res.nodes_final <= res.nodes_exported


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_semantics_match_pytorch_at_odd_sizes(tmp_path, align_corners):
    import onnxruntime as ort

    net = seeded(TinySeg(align_corners=align_corners))
    res = do_export(net, tmp_path, card=make_card((37, 53)), parity_frames=frames(1, (37, 53)))
    x = torch.randn(1, 3, 37, 53, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = net(x).numpy()
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    assert got.shape == (1, NUM_CLASSES, 37, 53)
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, scale), rtol=1e-4)


@pytest.mark.parametrize("dtype", ["uint8", "int32"])
def test_labels_output_equals_argmax_of_logits(net, tmp_path, dtype):
    import onnxruntime as ort

    logits = do_export(net, tmp_path, name="lg")
    # uint8 is for ONNX Runtime: TensorRT converts no INT32 (ArgMax) to UINT8, so the report says so
    labels = do_export(
        net, tmp_path, name="lb", output="labels", labels_dtype=dtype, allow_trt_errors=dtype == "uint8"
    )
    assert labels.card.output == "labels" and labels.card.extra["export"]["labels_dtype"] == dtype
    assert bool(labels.trt.errors) == (dtype == "uint8")
    assert labels.io["outputs"]["labels"] == [1, 48, 64]
    x = np.random.default_rng(1).normal(size=(1, 3, 48, 64)).astype(np.float32)
    lg = ort.InferenceSession(str(logits.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    lb = ort.InferenceSession(str(labels.path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert lb.dtype == np.dtype(dtype) and lb.shape == (1, 48, 64)
    np.testing.assert_array_equal(lb, lg.argmax(axis=1))
    assert labels.parity.output_dtype == dtype and labels.parity.passed


def test_dynamic_means_the_batch_alone(net, tmp_path):
    """`--dynamic` makes the batch dynamic and keeps H x W: the card says so apart (dynamic_batch, not
    dynamic H/W), so the runtime resizes frames to 48x64 and batches several streams' frames."""
    import onnxruntime as ort

    res = do_export(net, tmp_path, dynamic=True)
    assert res.io["inputs"]["input"] == ["batch", 3, 48, 64]
    assert res.io["outputs"]["logits"] == ["batch", NUM_CLASSES, 48, 64]
    assert res.card.dynamic_batch and not res.card.dynamic
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((3, 3, 48, 64), np.float32)})[0].shape == (
        3,
        NUM_CLASSES,
        48,
        64,
    )


def test_dynamic_export_runs_at_two_sizes(net, tmp_path):
    import onnxruntime as ort

    res = do_export(net, tmp_path, dynamic=True, dynamic_hw=True, parity_frames=frames(2, (40, 72)))
    assert res.io["inputs"]["input"] == ["batch", 3, "height", "width"]
    assert res.io["outputs"]["logits"] == ["batch", NUM_CLASSES, "height", "width"]
    assert res.card.dynamic and res.card.dynamic_batch
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 64, 96), (2, 3, 96, 128)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[2]))
        with torch.no_grad():
            ref = net(x).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert got.shape == (shape[0], NUM_CLASSES, shape[2], shape[3])
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.999
        np.testing.assert_allclose(got, ref, atol=1e-4)


class BranchyNet(nn.Module):
    """Data-dependent Python control flow: the tracer freezes one branch, so ONNX != PyTorch on dark frames."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, NUM_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if float(x.min()) >= 0:  # the export's dummy input (uniform 0..1) takes this branch;
            return y  # normalised real frames always have negative values (pixels darker than the mean)
        return -y


def test_parity_failure_fails_clearly_and_writes_nothing(tmp_path):
    net = seeded(BranchyNet())
    target = tmp_path / "br" / "br.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"previous export")
    dark = [np.zeros((48, 64, 3), np.uint8)]  # normalised to ~-2: PyTorch takes the other branch
    with pytest.raises(
        ExportCheckError, match=r"parity check failed: .* agree on .*nothing was written"
    ) as info:
        export_onnx(net, target, make_card(), parity_frames=dark)
    assert info.value.result.parity.agreement < 0.999 and not info.value.result.written
    assert target.read_bytes() == b"previous export"  # the old file survives, no partial write
    assert sorted(p.name for p in target.parent.iterdir()) == ["br.onnx"]  # no temp files, no card


class DetNet(nn.Module):
    """Uses Det (no TensorRT importer) on data-dependent values, so constant folding cannot remove it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, NUM_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.linalg.det(F.adaptive_avg_pool2d(x, 2))  # N x 3
        return self.conv(x * d.mean(1).view(-1, 1, 1, 1))


def test_trt_rejected_op_blocks_export_unless_allowed(tmp_path):
    net = seeded(DetNet())
    with pytest.raises(ExportCheckError, match=r"TensorRT would reject 1 op\(s\): Det"):
        do_export(net, tmp_path, name="det")
    assert not (tmp_path / "det" / "det.onnx").exists()
    res = do_export(net, tmp_path, name="det", allow_trt_errors=True)
    assert res.written and [r.status for r in res.trt.rows if r.op == "Det"] == ["error"]


def test_simplifiers_and_no_simplify(net, tmp_path):
    plain = do_export(net, tmp_path, name="plain", simplify=False)
    sim = do_export(net, tmp_path, name="sim", simplify="onnxsim")
    slim = do_export(net, tmp_path, name="slim", simplify="onnxslim")
    assert plain.simplifier is None and sim.simplifier == "onnxsim" and slim.simplifier == "onnxslim"
    assert plain.nodes_final == plain.nodes_exported
    assert sim.nodes_final < plain.nodes_final and slim.nodes_final < plain.nodes_final
    with pytest.raises(EdgesegError, match="unknown simplifier"):
        do_export(net, tmp_path, name="bad", simplify="nope")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"height": 4}, "at least 8"),
        ({"opset": 9}, "--opset must be between"),
        ({"output": "probs"}, "--output must be"),
        ({"labels_dtype": "float"}, "labels dtype"),
    ],
)
def test_bad_options_are_one_line_errors(net, tmp_path, kw, message):
    with pytest.raises(EdgesegError, match=message):
        do_export(net, tmp_path, **kw)


def test_checkpoint_export_records_hash(tmp_path):
    """A checkpoint path is loaded through the registry and its sha256 lands in the card."""
    from edgeseg.card import sha256_file
    from edgeseg.checkpoint import save_checkpoint

    models = pytest.importorskip("edgeseg.models")
    name = "fcn8s_lite"  # the smallest registered net: seconds to build and export
    if name not in models.list_models():
        pytest.skip(f"{name} is not registered")
    card = make_card((32, 32)).replace(model=name)
    net = models.create_model(name, num_classes=NUM_CLASSES).eval()
    card = card.replace(model_kwargs=dict(getattr(net, "edgeseg_kwargs", {})))
    ckpt = tmp_path / "ck.pt"
    save_checkpoint(ckpt, net.state_dict(), card)
    res = export_onnx(ckpt, tmp_path / "out" / "m.onnx", parity_frames=frames(1, (32, 32)))
    assert res.card.checkpoint_sha256 == sha256_file(ckpt) and res.source == str(ckpt)


def test_dynamic_labels_export(net, tmp_path):
    import onnxruntime as ort

    res = do_export(
        net, tmp_path, dynamic=True, dynamic_hw=True, output="labels", parity_frames=frames(1, (40, 72))
    )
    assert res.io["outputs"]["labels"] == ["batch", "height", "width"]
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 32, 64), (2, 3, 64, 32)]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = net(x).argmax(1).numpy()
        got = sess.run(None, {"input": x.numpy()})[0]
        assert got.dtype == np.int32 and got.shape == (shape[0], shape[2], shape[3])
        assert (got == ref).mean() >= 0.999


def test_export_is_reproducible(net, tmp_path):
    """Same net + options -> byte-identical ONNX, so content-keyed caches (calibration) stay valid."""
    from edgeseg.card import sha256_file

    first = sha256_file(do_export(net, tmp_path, name="a").path)
    again = sha256_file(do_export(net, tmp_path, name="a").path)  # overwrite in place
    other = sha256_file(do_export(net, tmp_path, name="b").path)
    assert first == again == other
    labels = sha256_file(do_export(net, tmp_path, name="c", output="labels").path)
    assert labels != first
