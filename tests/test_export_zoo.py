"""Every registered model through the full `export_onnx` pipeline (simplify, parity, TensorRT report).

Fast tier: each model with its lightest backbone, dynamic H/W, parity at two sizes (one not
stride-aligned). Slow tier (`make test-all`): each model's default backbone at a fixed size.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from edgeseg.card import ModelCard, default_palette  # noqa: E402
from edgeseg.export import graph  # noqa: E402
from edgeseg.export.onnx_export import export_onnx  # noqa: E402
from edgeseg.models.catalog import entries, model_names  # noqa: E402

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _lightest(model: str) -> str:
    return min(entries(model), key=lambda r: r["params"])["backbone"]


def _default(model: str) -> str:
    return next(r for r in entries(model) if r["default"])["backbone"]


CASES = [pytest.param(m, _lightest(m), True, id=f"{m}-{_lightest(m)}") for m in model_names()]
CASES += [
    pytest.param(m, _default(m), False, id=f"{m}-{_default(m)}", marks=pytest.mark.slow)
    for m in model_names()
    if _default(m) != _lightest(m)
]


@pytest.mark.parametrize("name, backbone, dynamic", CASES)
def test_zoo_model_exports_with_parity_and_trt_clean_graph(name, backbone, dynamic, tmp_path):
    from edgeseg.models import create_model

    torch.manual_seed(0)
    kw = {} if backbone == "-" else {"backbone": backbone}
    net = create_model(name, num_classes=6, **kw).eval()
    card = ModelCard(
        model=name, classes=[f"c{i}" for i in range(6)], palette=default_palette(6), input_size=(64, 96),
        model_kwargs=dict(net.edgeseg_kwargs),
    )  # fmt: skip
    res = export_onnx(
        net, tmp_path / f"{name}.onnx", card, dynamic=dynamic, dynamic_hw=dynamic, parity_scenes=2
    )
    assert res.written and res.parity.passed, res.parity
    assert res.trt.errors == [] and res.trt.warnings == [], res.trt.to_dict()
    ops = graph.op_counts(graph.load_onnx(res.path))
    assert "ReduceMean" not in ops  # global pooling exported as GlobalAveragePool
    model = graph.load_onnx(res.path)
    for node in model.graph.node:
        if node.op_type == "Resize":
            assert len(node.input) == 4 and node.input[3], f"{node.name} uses scales, not sizes"
    assert res.card.model_kwargs == net.edgeseg_kwargs
