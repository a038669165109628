"""`edgeseg card`: a model card for an ONNX made elsewhere, checked against its graph and embedded
atomically, so the runtime can use a foreign ONNX like an exported one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgeseg.card import ModelCard
from edgeseg.cli import app
from edgeseg.errors import EdgesegError
from edgeseg.runtime.segmenter import Segmenter


def card(*args: str):
    return CliRunner().invoke(app, ["card", *args])


def one_line_error(*args: str) -> str:
    r = card(*args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and "Traceback" not in r.output, r.output
    return lines[-1]


@pytest.fixture
def foreign_onnx(tiny_onnx, tmp_path: Path) -> Path:
    """A 4-class 32x48 logits ONNX without any edgeseg metadata, as other tools write them."""
    model = onnx.load(str(tiny_onnx(num_classes=4)))
    del model.metadata_props[:]
    model.metadata_props.append(onnx.StringStringEntryProto(key="author", value="someone else"))
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    with pytest.raises(EdgesegError, match="carries no edgeseg metadata"):
        Segmenter(path)
    return path


def test_embedded_card_makes_a_foreign_onnx_usable(foreign_onnx, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("road\nsidewalk 244 35 232\nperson\nsky\n")
    r = card("--onnx", str(foreign_onnx), "--classes", str(names), "--mean", "0.5,0.5,0.5", "--std",
             "0.25,0.25,0.25", "--color-order", "BGR", "--embed")  # fmt: skip
    assert r.exit_code == 0, r.output
    sidecar = foreign_onnx.with_suffix(".card.json")
    assert str(sidecar) in r.output.replace("\n", "")
    seg = Segmenter(foreign_onnx)
    assert seg.classes == ["road", "sidewalk", "person", "sky"] and seg.card.palette[1] == (244, 35, 232)
    assert seg.card.input_size == (32, 48) and seg.card.output == "logits"  # read from the graph
    assert seg.card.color_order == "BGR" and seg.card.mean == (0.5, 0.5, 0.5)
    assert ModelCard.load_json(sidecar).to_dict() == seg.card.to_dict()
    props = {p.key: p.value for p in onnx.load(str(foreign_onnx)).metadata_props}
    assert props["author"] == "someone else"  # foreign metadata kept
    labels = seg.infer(np.zeros((20, 30, 3), np.uint8))
    assert labels.shape == (20, 30)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporary left


def test_card_without_onnx_from_flags(tmp_path):
    out = tmp_path / "net.card.json"
    r = card(str(out), "--classes", "3", "--input-size", "64x96", "--output", "labels", "--json")
    assert r.exit_code == 0, r.output
    c = ModelCard.load_json(out)
    assert c.classes == ["class_0", "class_1", "class_2"] and c.input_size == (64, 96)
    assert c.output == "labels" and c.model == "net"
    assert json.loads(r.output)["card"] == str(out)


def test_cards_that_contradict_the_graph_or_bad_values_are_one_line_errors(foreign_onnx, tmp_path):
    assert "scores 4 classes but the card lists 3" in one_line_error(
        "--onnx", str(foreign_onnx), "--classes", "3"
    )
    assert "input is 32x48" in one_line_error("--onnx", str(foreign_onnx), "--input-size", "64x64", "--embed")
    assert "outputs logits" in one_line_error("--onnx", str(foreign_onnx), "--output", "labels")
    assert "use 0.4824,0.4569,0.4059" in one_line_error(
        "--onnx", str(foreign_onnx), "--mean", "123,116.5,103.5"
    )
    assert "--input-size" in one_line_error(str(tmp_path / "x.card.json"), "--classes", "2")
    assert "--embed needs --onnx" in one_line_error(str(tmp_path / "x.card.json"), "--embed")
    assert not foreign_onnx.with_suffix(".card.json").exists()
    assert "carries no edgeseg metadata" in str(pytest.raises(EdgesegError, Segmenter, foreign_onnx).value)


def test_a_foreign_dynamic_batch_file_streams_any_frame_size_like_a_fixed_one(tiny_onnx, tmp_path):
    """torch.onnx.export with dynamic_axes={0: "batch"} alone: H and W stay fixed. Its card keeps the
    batch and the spatial axes apart, so frames of any size are resized to 32x48 (not padded to their
    own size, which the graph refuses) and several streams batch their frames."""
    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.runtime.launch import open_multistream
    from edgeseg.runtime.sources import SyntheticSource

    n = len(SYNTH_CLASSES)  # the generated streams score against their own ground truth
    model = onnx.load(str(tiny_onnx(num_classes=n, batch="batch")))
    del model.metadata_props[:]
    path = tmp_path / "batch_only.onnx"
    onnx.save(model, str(path))
    r = card("--onnx", str(path), "--classes", str(n))
    assert r.exit_code == 0, r.output
    made = ModelCard.load_json(path.with_suffix(".card.json"))
    assert made.dynamic_batch and not made.dynamic and made.input_size == (32, 48)
    assert "dynamic batch" in r.output and "dynamic H/W" not in r.output
    seg = Segmenter(path)
    assert seg.infer(np.zeros((256, 512, 3), np.uint8)).shape == (256, 512)
    assert seg.backend.batch_limits == (1, None)
    sources = [SyntheticSource(4, height=60, width=90, seed=i) for i in range(2)]
    multi = open_multistream(seg, sources)
    stats = multi.run()
    assert stats.processed == 8 and multi.batching().note is None, multi.batching()


def test_a_card_from_before_the_split_runs_a_batch_only_graph_resized(tiny_onnx, tmp_path):
    """Cards written before the split called a dynamic-batch-only file `dynamic`: the backend reads the
    graph's fixed H x W and resizes frames to it instead of refusing every other size."""
    path = tiny_onnx(num_classes=4, batch="batch")
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props["edgeseg.dynamic"] = "true"
    props.pop("edgeseg.dynamic_batch")
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, str(path))
    assert ModelCard.from_metadata_props(props).dynamic  # the old meaning
    seg = Segmenter(path)
    assert not seg.card.dynamic and seg.card.dynamic_batch and seg.card.input_size == (32, 48)
    assert seg.infer(np.zeros((256, 512, 3), np.uint8)).shape == (256, 512)
