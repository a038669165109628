"""`edgeseg build` on the command line: model resolution, JSON report, errors, the TensorRT hand-off."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.errors import ExitCode

runner = CliRunner()


# the tiny models' classes are not the street classes: calibration data must be named (synth, on purpose);
# their one random 1x1 conv loses ~10 mIoU points in INT8 (near-equal logits), and a gate that moved that
# conv to float would leave no INT8 (refused), so these plumbing tests allow the loss
SMALL_DATA = ["--calib-data", "synth", "--calib-images", "4", "--eval-images", "4", "--max-miou-drop", "50"]


def _place(tiny_onnx, workdir: Path, name: str, mtime: float) -> Path:
    """Put a tiny model where `edgeseg export` would: <wd>/<name>/<name>.onnx."""
    src = tiny_onnx(name=name)
    dst = workdir / name / f"{name}.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    os.utime(dst, (mtime, mtime))
    return dst


def _json(output: str) -> dict:
    return json.loads(output)  # stdout must be pure JSON (progress and warnings go to stderr)


def test_build_without_model_uses_the_newest_export(tiny_onnx, _isolated_workdir):
    old = _place(tiny_onnx, _isolated_workdir, "older", 1_000_000)
    new = _place(tiny_onnx, _isolated_workdir, "newer", 2_000_000)
    result = runner.invoke(app, ["build", "--int8", *SMALL_DATA, "--json"])
    assert result.exit_code == 0, result.output
    report = _json(result.stdout)
    assert report["model"] == str(new)
    assert report["passed"] is True
    # the tiny model has 3 classes, the generated scenes 8: FP32 predictions are the reference
    assert report["reference"] == "fp32"
    names = {Path(a["artifact"]).name for a in report["artifacts"]}
    assert names == {"newer.onnx", "newer.int8.cpu.onnx", "newer.int8.qdq.onnx"}
    for a in report["artifacts"]:
        assert Path(a["artifact"]).is_file() and a["size_bytes"] > 0
        assert a["argmax_agreement"] is not None
    assert (new.parent / "newer.calib.json").is_file()
    assert not (old.parent / "older.int8.cpu.onnx").exists()
    assert report["calibration"]["from_cache"] is False

    again = runner.invoke(app, ["build", "newer", "--int8", *SMALL_DATA, "--json"])
    assert again.exit_code == 0, again.output
    assert _json(again.stdout)["calibration"]["from_cache"] is True


def test_build_table_output_and_fp16(tiny_onnx, _isolated_workdir):
    path = _place(tiny_onnx, _isolated_workdir, "tiny", 1_000_000)
    result = runner.invoke(
        app,
        [
            "build",
            str(path),
            "--fp16",
            "--int8",
            "--int8-forms",
            "cpu",
            *SMALL_DATA,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fp16" in result.output and "per-class IoU" in result.output
    # off a terminal the FP16 step gets its start and its end line (it used to stop at 0/1)
    assert "converting to FP16 0/1" in result.output and "converting to FP16 1/1" in result.output
    assert (path.parent / "tiny.fp16.onnx").is_file()
    assert (path.parent / "tiny.int8.cpu.onnx").is_file()
    assert not (path.parent / "tiny.int8.qdq.onnx").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build"], "nothing to build"),
        (["build", "--int8", "--target", "cuda"], "unknown --target"),
        (["build", "--int8", "--calib-method", "kl"], "unknown calibration method"),
        (["build", "nosuch", "--int8"], "no export named 'nosuch'"),
        (["build", "--int8", "--cpu-format", "fast"], "unknown --cpu-format"),
        (["build", "--int8", "--qdq-engine", "trt"], "unknown --qdq-engine"),
        (
            ["build", "--int8", "--max-miou-drop", "-1"],
            "Invalid value for '--max-miou-drop': -1 must be at least 0",
        ),
    ],
)
def test_build_errors_are_one_line(tiny_onnx, _isolated_workdir, args, message):
    _place(tiny_onnx, _isolated_workdir, "tiny", 1_000_000)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_build_options_are_checked_once_when_made_and_never_change():
    """One validation style: a frozen dataclass checked in __post_init__; a variant is made with
    dataclasses.replace, which checks it again."""
    import dataclasses

    from edgeseg.build import BuildOptions
    from edgeseg.errors import EdgesegError
    from edgeseg.export.tensorrt_plan import EngineOptions

    with pytest.raises(EdgesegError, match="--max-miou-drop must be >= 0"):
        BuildOptions(int8=True, max_miou_drop=-1)
    opts = BuildOptions(int8=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.max_miou_drop = 5.0  # type: ignore[misc]
    with pytest.raises(EdgesegError, match="unknown --cpu-format"):
        dataclasses.replace(opts, cpu_format="fast")
    engine = EngineOptions(precision="int8", legacy_calibrator=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        engine.calibration_cache = Path("x.calib")  # type: ignore[misc]
    with pytest.raises(EdgesegError, match="--legacy-calibrator is an INT8 option"):
        dataclasses.replace(engine, precision="fp16")


def test_build_with_no_export_and_corrupt_export(_isolated_workdir):
    result = runner.invoke(app, ["build", "--int8"])
    assert result.exit_code == 2 and "edgeseg export" in result.output
    bad = _isolated_workdir / "broken" / "broken.onnx"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x08\x07garbage" * 50)
    result = runner.invoke(app, ["build", "--int8"])
    assert result.exit_code == 2
    assert "not a valid ONNX model" in result.output and "Traceback" not in result.output


def test_empty_calibration_folder_is_a_clear_error(tiny_onnx, _isolated_workdir, tmp_path):
    _place(tiny_onnx, _isolated_workdir, "tiny", 1_000_000)
    empty = tmp_path / "calib"
    empty.mkdir()
    result = runner.invoke(app, ["build", "--int8", "--calib-data", str(empty)])
    assert result.exit_code == 2 and "is empty" in result.output


def test_tensorrt_target_hands_the_qdq_onnx_to_the_engine_builder(tiny_onnx, _isolated_workdir):
    path = _place(tiny_onnx, _isolated_workdir, "tiny", 1_000_000)
    args = ["build", "--target", "tensorrt", "--int8", *SMALL_DATA]
    result = runner.invoke(app, [*args, "--workspace", "512", "--json"])
    assert result.exit_code == ExitCode.NEEDS_DEVICE, result.output  # no TensorRT here: the hand-off
    handoff = json.loads(result.stdout)
    qdq = path.parent / "tiny.int8.qdq.onnx"
    assert handoff["precision"] == "int8" and handoff["onnx"] == str(qdq) and qdq.is_file()
    assert "--memPoolSize=workspace:512" in handoff["commands"]["trtexec_10"]
    assert "--memPoolSize=workspace:512" in handoff["commands"]["trtexec_11"]
    assert not (path.parent / "tiny.int8.cpu.onnx").exists()  # only the TensorRT form for this target


def test_tensorrt_target_builds_an_already_quantized_onnx_as_is(tiny_onnx, _isolated_workdir):
    """The hand-off command printed on a machine without TensorRT: `edgeseg build X.int8.qdq.onnx --target tensorrt`."""
    _place(tiny_onnx, _isolated_workdir, "tiny", 1_000_000)
    made = runner.invoke(app, ["build", "--int8", "--int8-forms", "qdq", *SMALL_DATA])
    assert made.exit_code == 0, made.output
    qdq = _isolated_workdir / "tiny" / "tiny.int8.qdq.onnx"
    result = runner.invoke(app, ["build", str(qdq), "--target", "tensorrt", "--int8"])
    assert result.exit_code == ExitCode.NEEDS_DEVICE, result.output
    flat = result.output.replace("\n", "")
    assert "tiny.int8.qdq.onnx, the TensorRT-ready int8 ONNX" in flat and f"Copy {qdq.parent} " in flat
    assert "calibration" not in result.output  # nothing recalibrated or re-gated


def test_gate_failure_exits_non_zero_with_the_attempts(tiny_onnx, _isolated_workdir):
    path = _place(tiny_onnx, _isolated_workdir, "tiny", 1_000_000)
    args = ["build", "--int8", "--int8-forms", "qdq", *SMALL_DATA]
    result = runner.invoke(app, [*args, "--max-miou-drop", "0", "--max-fallback-layers", "0", "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is False and "limit 0.00" in report["error"]
    assert report["gates"][0]["attempts"][0]["passed"] is False
    assert not (path.parent / "tiny.int8.qdq.onnx").exists()  # a rejected INT8 model is not left behind
    # mIoU is a fraction (0..1) as in `eval --json` and `run --json`; only the drop is in points
    gate, fp32 = report["gates"][0], report["artifacts"][0]
    assert 0.0 <= gate["int8_miou"] <= gate["fp32_miou"] <= 1.0 and fp32["miou"] == gate["fp32_miou"]
    assert gate["drop_points"] == pytest.approx(100 * (gate["fp32_miou"] - gate["int8_miou"]), abs=2e-3)
    assert report["gates"][0]["attempts"][0]["miou"] == gate["int8_miou"]
    assert "error:" in result.output and "Traceback" not in result.output


def test_a_gate_that_would_move_every_layer_to_float_fails_and_keeps_the_previous_files(
    tiny_onnx, _isolated_workdir
):
    """A file named int8 must hold INT8 compute: when only the last layer in float would pass the gate,
    the gate fails (exit 3) instead of writing a float model under the int8 name, the previous good
    files stay, and the one error line names both failed forms and the options that help."""
    path = _isolated_workdir / "two" / "two.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(tiny_onnx(name="two", hidden=8).read_bytes())  # two convs: two quantizable layers
    args = ["build", "two", "--int8", *SMALL_DATA]
    first = runner.invoke(app, [*args, "--max-miou-drop", "50", "--json"])
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in path.parent.iterdir() if "int8" in p.name}
    assert sorted(before) == [
        "two.int8.cpu.card.json",
        "two.int8.cpu.onnx",
        "two.int8.qdq.card.json",
        "two.int8.qdq.onnx",
    ]

    again = runner.invoke(app, [*args, "--max-miou-drop", "0", "--json"])
    assert again.exit_code == ExitCode.GATE_FAILED, again.output
    report = _json(again.stdout)
    error = report["error"]
    assert "INT8 cpu and qdq both failed the gate" in error and "\n" not in error
    assert "--max-miou-drop" in error and "--max-fallback-layers" in error
    assert error.count("would leave no INT8 compute") == 2 and error.count("kept the previous") == 2
    for gate in report["gates"]:  # the fallback stopped one layer short of all-float
        assert len(gate["excluded_nodes"]) == 1 and not gate["passed"]
    after = {p.name: p.read_bytes() for p in path.parent.iterdir() if "int8" in p.name}
    assert after == before
