"""Shared fixtures. Tests keep models tiny and inputs small so the suite fits CI's 2 cores."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own workspace, so nothing leaks into ./edgeseg-work."""
    wd = tmp_path / "work"
    monkeypatch.setenv("EDGESEG_WORKDIR", str(wd))
    return wd


@pytest.fixture
def tiny_onnx(tmp_path: Path):
    """Factory for a torch-free ONNX segmenter: a 1x1 conv (3 -> C) with an edgeseg card inside."""

    def make(num_classes: int = 3, size=(32, 48), dynamic: bool = False, name: str = "tiny") -> Path:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        from edgeseg.card import ModelCard, default_palette

        rng = np.random.default_rng(0)
        w = rng.normal(size=(num_classes, 3, 1, 1)).astype(np.float32)
        b = np.zeros(num_classes, dtype=np.float32)
        h, wd = ("H", "W") if dynamic else size
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N" if dynamic else 1, 3, h, wd])
        y = helper.make_tensor_value_info(
            "logits", TensorProto.FLOAT, ["N" if dynamic else 1, num_classes, h, wd]
        )
        node = helper.make_node("Conv", ["input", "w", "b"], ["logits"])
        graph = helper.make_graph(
            [node], "tiny", [x], [y], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        card = ModelCard(
            model=name,
            classes=[f"c{i}" for i in range(num_classes)],
            palette=default_palette(num_classes),
            input_size=size,
            dynamic=dynamic,
        )
        for k, v in card.to_metadata_props().items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path)
        return path

    return make
