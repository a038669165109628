"""`edgeseg demo --quick`: the whole chain from the shipped default model, measured for real."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from edgeseg.cli import app


@pytest.mark.timeout(900)
def test_quick_demo_runs_the_chain(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--quick", "--out", str(out), "--frames", "6", "--threads", "1", "--json"]
    args += ["--calib-images", "8", "--eval-images", "4"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{") :])
    precisions = [row["precision"] for row in report["rows"]]
    assert precisions[:4] == ["fp32", "fp32", "fp16", "fp16"] and "int8-cpu" in precisions  # ORT, OpenVINO
    for row in report["rows"]:
        assert row["fps"] > 0 and 0.0 <= row["miou"] <= 1.0 and row["size_mb"] > 0
    fp32 = report["rows"][0]
    # INT8 passed its gate (<= 1 point on the build's held-out scenes); on the stream it stays close too
    int8 = next(row for row in report["rows"] if row["precision"] == "int8-cpu")
    assert abs(int8["miou"] - fp32["miou"]) < 0.03
    # OpenVINO (in `all`) runs the same files beside ONNX Runtime, not the QOperator form it cannot read
    ov = {row["precision"]: row for row in report["rows"] if row["runtime"] == "openvino"}
    assert set(ov) == {"fp32", "fp16", "int8-qdq"} and ov["fp32"]["artifact"] == "OpenVINO FP32"
    assert abs(ov["int8-qdq"]["miou"] - fp32["miou"]) < 0.03
    video = cv2.VideoCapture(report["video"])
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    for png in report["plots"]:
        assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "report.json").is_file() and (out / "model.card.json").is_file()


def test_table_rows_match_columns():
    from edgeseg import demo

    row = demo.DemoRow("a", "fp32", Path("x.onnx"), 1.0, 10.0, 5.0, 20.0, 30.0, 0.5, "n")
    rows = demo.table_rows(demo.DemoResult(out=Path("."), rows=[row]))
    assert len(rows[0]) == len(demo.COLUMNS)
    assert dict(zip(demo.COLUMNS, rows[0]))["infer ms"] == 5.0


def test_readme_says_how_many_of_the_demo_scenes_train():
    """The README said the demo trains on its 320 scenes; it trains on the 282 of them in the folder's
    train split (edgeseg's name-hash split) and validates on other scenes."""
    from edgeseg import demo
    from edgeseg.data.plain import in_val_split

    n = demo.DemoConfig().train_images
    trained = sum(not in_val_split(f"scene_{i:06d}") for i in range(n))
    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert (
        f"generates {n} street scenes" in readme
        and f"on the {trained} of them in that folder's train split" in readme
    )
    assert f"the other {n - trained} are its validation split" in readme
