"""Calibration and the INT8 gate for models that are not of the street classes: no silent default to the
generated street scenes, FP32 predictions as the reference where data has no labels of the model's
classes, and warnings when the reference says little (random weights, chance-level FP32, one class)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseg.calib.data import open_calibration
from edgeseg.calib.gate import Gate, open_eval_data
from edgeseg.card import ModelCard, default_palette
from edgeseg.cli import app
from edgeseg.data.synth import SYNTH_CLASSES, SYNTH_PALETTE, write_video
from edgeseg.errors import EdgesegError

runner = CliRunner()


def card_of(classes: list[str], **extra) -> ModelCard:
    return ModelCard(
        model="mine", classes=classes, palette=default_palette(len(classes)), input_size=(32, 48), extra=extra
    )


STREET = ModelCard(
    model="street", classes=list(SYNTH_CLASSES), palette=list(SYNTH_PALETTE), input_size=(32, 48)
)
OTHER = card_of(["background", "cat", "dog"])


def test_no_calibration_default_for_other_classes():
    with pytest.raises(
        EdgesegError, match=r"mine predicts its own classes \(3: background, cat, dog\).*--calib-data"
    ):
        open_calibration(None, OTHER, n=2)
    assert (
        open_calibration(None, STREET, n=2).kind == "synth"
        and open_calibration(None, STREET, n=2).note is None
    )


def test_street_scenes_for_other_classes_calibrate_with_a_warning(capsys):
    calib = open_calibration("synth", OTHER, n=2)
    assert calib.kind == "synth" and "shows other classes" in calib.note
    assert "warning:" in capsys.readouterr().err
    assert calib.describe()["note"] == calib.note


def test_eval_data_follows_the_model_classes(tmp_path):
    street = open_eval_data(None, STREET, 2)
    assert street.spec == "synth:2" and street.reference == "labels"
    with pytest.raises(EdgesegError, match="--calib-data .* or --eval-data"):
        open_eval_data(None, OTHER, 2)
    same_count = card_of([f"k{i}" for i in range(len(SYNTH_CLASSES))])  # 8 classes, not the street ones
    assert open_eval_data("synth:2", same_count, 2).reference == "fp32"
    video = tmp_path / "clip.mp4"
    write_video(video, 6, 32, 48)
    data = open_eval_data(None, OTHER, 3, fallback=str(video))  # the calibration data, unlabelled
    assert data.spec == str(video) and data.reference == "fp32" and len(data) == 3
    assert all(m is None for m in data.masks)


def test_gate_warns_when_its_reference_says_little(tiny_onnx, capsys):
    path = tiny_onnx(num_classes=len(SYNTH_CLASSES), size=(32, 48))  # a random 1x1 conv
    card = STREET.replace(extra={"random_weights": True})
    gate = Gate(path, card, open_eval_data("synth:3", card, 3))
    text = " ".join(gate.warnings)
    assert "random weights" in text
    assert "less than predicting one class everywhere could" in text
    assert capsys.readouterr().err.count("warning:") == len(gate.warnings)
    trained_looking = Gate(path, STREET, open_eval_data("synth:3", STREET, 3))
    assert not any("random weights" in w for w in trained_looking.warnings)


def _place(tiny_onnx, workdir: Path) -> Path:
    src = tiny_onnx(name="pets")  # classes c0, c1, c2: not the street classes
    dst = workdir / "pets" / "pets.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    os.utime(dst, (1_000_000, 1_000_000))
    return dst


def test_build_int8_asks_for_calibration_data_before_any_work(tiny_onnx, _isolated_workdir):
    path = _place(tiny_onnx, _isolated_workdir)
    result = runner.invoke(app, ["build", "--int8"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "pass --calib-data" in lines[0] and "Traceback" not in result.output
    assert sorted(p.name for p in path.parent.iterdir()) == ["pets.onnx"]  # nothing evaluated or written


def test_build_int8_with_unlabelled_video_gates_against_fp32(tiny_onnx, _isolated_workdir, tmp_path):
    _place(tiny_onnx, _isolated_workdir)
    video = tmp_path / "street.mp4"
    write_video(video, 8, 32, 48)
    args = ["build", "--int8", "--int8-forms", "cpu", "--calib-data", str(video), "--calib-images", "4"]
    args += ["--max-miou-drop", "50"]  # the tiny net's one conv loses points in INT8; in float it is no INT8
    result = runner.invoke(app, [*args, "--eval-images", "4", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reference"] == "fp32" and report["eval_data"] == str(video)
    table = runner.invoke(app, [*args, "--eval-images", "4"])
    assert "predictions (no labels for this class set)" in " ".join(table.output.split())  # says so


def _signature(rgb) -> bytes:
    return rgb[::7, ::7].tobytes()


def test_the_gate_leaves_out_the_calibration_images_of_the_same_source(tmp_path):
    """Without --eval-data a model of its own classes is gated on its calibration data: on the images
    the ranges were not taken from (folder, video and labelled dataset alike), at most --eval-images."""
    import cv2
    import numpy as np

    from edgeseg.data.synth import write_dataset

    rng = np.random.default_rng(0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    video = tmp_path / "clip.mp4"
    write_video(video, 12, 32, 48)
    dataset = write_dataset(tmp_path / "ds", 12, 32, 48)
    for spec in (str(folder), str(video), str(dataset)):
        calib = open_calibration(spec, OTHER, n=4)
        data = open_eval_data(None, OTHER, 6, fallback=spec, calibrated_on=calib.names)
        seen = {_signature(calib.image(i)) for i in range(len(calib))}
        assert len(data) == 6 and len(seen) == 4, spec
        assert not seen & {_signature(rgb) for rgb in data.images}, spec
    everything = open_calibration(str(folder), OTHER, n=12)  # nothing left over: said, and used as is
    data = open_eval_data(None, OTHER, 6, fallback=str(folder), calibrated_on=everything.names)
    assert len(data) == 6
