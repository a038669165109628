"""`edgeseg run` end to end: defaults, sources, outputs, one-line errors, Ctrl-C/SIGTERM finalisation,
and no torch on the ONNX path."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from test_runtime import write_images, write_video
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.errors import EdgesegError

runner = CliRunner()
EDGESEG = [sys.executable, "-m", "edgeseg"]


def run_cli(*args: str):
    return runner.invoke(app, ["run", *args])


def export_like(tiny_onnx, workdir: Path, name: str = "tiny", num_classes: int = 8) -> Path:
    """Place a tiny model where `edgeseg export` puts one: <workdir>/<name>/<name>.onnx."""
    src = tiny_onnx(num_classes=num_classes, size=(32, 64), name=name)
    (workdir / name).mkdir(parents=True, exist_ok=True)
    dst = workdir / name / f"{name}.onnx"
    dst.write_bytes(src.read_bytes())
    return dst


@pytest.fixture
def no_default_model(monkeypatch):
    import edgeseg.defaults

    def missing(kind="onnx"):
        raise EdgesegError("the default model is not part of this installation")

    monkeypatch.setattr(edgeseg.defaults, "default_model_path", missing)


def test_no_arguments_runs_synthetic_with_ground_truth(tiny_onnx, _isolated_workdir, no_default_model):
    export_like(tiny_onnx, _isolated_workdir)
    r = run_cli("--frames", "6", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["source"]["kind"] == "synthetic" and report["frames"]["processed"] == 6
    assert report["metrics"]["miou"] is not None and report["fps"] > 0
    assert report["latency_ms"]["capture_to_result"]["p95"] is not None
    assert report["artifact"].endswith("tiny/tiny.onnx")


def test_table_output_has_fps_latency_and_miou(tiny_onnx, _isolated_workdir, no_default_model):
    export_like(tiny_onnx, _isolated_workdir)
    r = run_cli("--model", "tiny", "--frames", "4", "--synthetic-size", "40x72")
    assert r.exit_code == 0, r.output
    for needle in (
        "FPS (end-to-end)",
        "latency p95",
        "mIoU",
        "per-stage latency",
        "inference",
        "per-class IoU",
    ):
        assert needle in r.stdout


def test_no_model_anywhere_is_one_clear_line(no_default_model):
    r = run_cli("--frames", "2")
    assert r.exit_code == 2 and "no model to run" in r.output and "Traceback" not in r.output


def test_images_with_labels_report_matches_confusion_matrix(tiny_onnx, tmp_path):
    from edgeseg.metrics import ConfusionMatrix
    from edgeseg.runtime import Segmenter

    write_images(tmp_path / "imgs", [(30, 41), (48, 64)], masks=tmp_path / "masks")
    model = tiny_onnx()
    r = run_cli(
        "--model", str(model), "--images", str(tmp_path / "imgs"), "--labels", str(tmp_path / "masks"),
        "--save-masks", str(tmp_path / "pred"), "--report", str(tmp_path / "r.json"), "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "r.json").read_text())
    seg, cm = Segmenter(model), ConfusionMatrix(3)
    for name in ("img_000", "img_001"):
        labels = seg.infer(cv2.imread(str(tmp_path / "imgs" / f"{name}.png")))
        cm.update(labels, cv2.imread(str(tmp_path / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED))
        assert (cv2.imread(str(tmp_path / "pred" / f"{name}.png"), cv2.IMREAD_UNCHANGED) == labels).all()
    assert report["metrics"]["miou"] == pytest.approx(cm.compute().miou)
    assert json.loads(r.stdout)["frames"]["processed"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera", "57", "--log", "frames.jsonl", "--save", "out.mp4"], "camera 57 could not be opened"),
        (["--video", "missing.mp4"], "video not found"),
        (["--gst", "videotestsrc ! appsink"], "GStreamer"),
        (["--serve", "host:port", "--frames", "1"], "--serve expects"),
        (["--mode", "heatmap", "--frames", "1"], "unknown visual mode"),
        (["--backend", "tensorrt"], "--backend tensorrt runs"),
        (["--camera", "0", "--video", "x.mp4"], "camera 0 could not be opened"),  # two streams, one model
        (["--video", "x.mp4", "--synthetic", "--save", "o_{stream}.mp4"], "video not found"),
    ],
)
def test_bad_input_is_one_line_nonzero_exit(tiny_onnx, monkeypatch, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    r = run_cli("--model", str(tiny_onnx(num_classes=8)), *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not list(Path.cwd().glob(".*partial*"))
    assert len([line for line in r.output.splitlines() if line.strip()]) <= 2  # one message (may wrap once)


def test_wrong_artifacts_fail_clearly(tmp_path):
    (tmp_path / "model.txt").write_text("hello")
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    r = run_cli("--model", str(tmp_path / "model.txt"))
    assert r.exit_code == 2 and "don't know how to run model.txt" in r.output
    r = run_cli("--model", str(tmp_path / "broken.onnx"))
    assert r.exit_code == 2 and "broken.onnx is not a valid ONNX model" in r.output
    (tmp_path / "other-gpu.engine").write_bytes(b"serialized engine from elsewhere")
    r = run_cli("--model", str(tmp_path / "other-gpu.engine"), "--frames", "1")
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output


def test_unreadable_video_fails_clearly(tmp_path, tiny_onnx):
    (tmp_path / "junk.mp4").write_bytes(b"\x00garbage" * 200)
    r = run_cli("--model", str(tiny_onnx()), "--video", str(tmp_path / "junk.mp4"))
    assert r.exit_code == 2 and "cannot read video" in r.output


def test_full_onnx_run_never_imports_torch(tiny_onnx, tmp_path):
    from bagfiles import camera_bag, camera_frames

    write_video(tmp_path / "clip.mp4", 4)
    model = tiny_onnx(num_classes=8)
    bag = camera_bag(tmp_path / "in", camera_frames(2))
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom edgeseg.cli import app\n"
        "import edgeseg.runtime.ros2node, edgeseg.cli.ros2\n"
        f"r = CliRunner().invoke(app, ['run', '--model', {str(model)!r}, '--bag', {str(bag)!r},"
        f" '--save-bag', {str(tmp_path / 'out')!r}, '--save-bag-overlay'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(app, ['run', '--model', {str(model)!r}, '--video', {str(tmp_path / 'clip.mp4')!r},"
        f" '--save', {str(tmp_path / 'o.mp4')!r}, '--log', {str(tmp_path / 'l.jsonl')!r}, '--legend', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"r = CliRunner().invoke(app, ['run', '--model', {str(model)!r}, '--synthetic', '--frames', '2'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "o.mp4").is_file()


def signal_when_writing(args: list[str], partials: list[Path], sig: int) -> tuple[int, str]:
    """`edgeseg ARGS` until every file in `partials` (globs of outputs being written: each writer
    stages under a unique name) exists, then `sig`; (exit code, stderr). A looping run is never left
    behind when the test fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*EDGESEG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not all(_found(p) for p in partials) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert all(_found(p) for p in partials), proc.communicate()
        time.sleep(0.3)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stderr


def _found(pattern: Path) -> bool:
    return any(pattern.parent.glob(pattern.name))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_finalises_video_and_report(tiny_onnx, tmp_path, sig):
    write_video(tmp_path / "clip.mp4", 20, size=(48, 64))
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    partial = tmp_path / ".out.*.partial.mp4"
    code, stderr = signal_when_writing(
        ["run", "--model", str(tiny_onnx()), "--video", str(tmp_path / "clip.mp4"), "--loop",
         "--save", str(out), "--report", str(report), "--threads", "1"],
        [partial], sig,
    )  # fmt: skip
    assert code == (143 if sig == signal.SIGTERM else 130), stderr  # SIGTERM: 143 (systemd)
    data = json.loads(report.read_text())
    assert data["interrupted"] and data["frames"]["processed"] > 0
    assert data["ended"] == {"reason": f"stopped by {sig.name}", "exit_code": code}
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened()
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    assert decoded == data["frames"]["processed"] == data["outputs"][0]["frames"]
    assert not _found(partial)


def test_python_module_entry_point_help():
    out = subprocess.run([*EDGESEG, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--synthetic" in out.stdout and "--reconnect" in out.stdout


def test_model_names_resolve_in_the_workspace(tiny_onnx, _isolated_workdir):
    from edgeseg.workspace import find_artifact

    def resolve_model(spec, backend, _):
        return find_artifact(spec, _isolated_workdir, backend=backend)

    base = export_like(tiny_onnx, _isolated_workdir, name="net")
    variant = base.with_name("net.int8.onnx")
    variant.write_bytes(base.read_bytes())
    engine = base.with_name("net.fp16.engine")
    engine.write_bytes(b"engine bytes")
    assert resolve_model("net", None, None) == base
    assert resolve_model("net.int8", None, None) == variant
    assert resolve_model("net", "tensorrt", None) == engine
    assert resolve_model(str(variant), "onnxruntime", None) == variant
    with pytest.raises(EdgesegError, match="no export or training run named 'other'"):
        resolve_model("other", None, None)
    with pytest.raises(EdgesegError, match="unknown --backend"):
        resolve_model("net", "bogus", None)


def test_video_frames_pair_with_labels_by_stem(tiny_onnx, tmp_path):
    import numpy as np

    write_video(tmp_path / "drive.mp4", 3, size=(48, 64))
    (tmp_path / "gt").mkdir()
    for k in (0, 2):  # frame 1 has no label: scored frames are 0 and 2 only
        cv2.imwrite(str(tmp_path / "gt" / f"drive_{k:06d}.png"), np.full((48, 64), k % 3, np.uint8))
    r = run_cli(
        "--model", str(tiny_onnx()), "--video", str(tmp_path / "drive.mp4"), "--labels", str(tmp_path / "gt"),
        "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["labels"]["matched"] == 2 and report["frames"]["unlabeled"] == 1
    assert report["metrics"]["pixels"] == 2 * 48 * 64


def test_bare_edgeseg_run_uses_the_shipped_default_model():
    """`edgeseg run` with no arguments: shipped model, synthetic stream with ground truth, headless."""
    from edgeseg.defaults import default_model_path

    r = run_cli("--frames", "8", "--threads", "1", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["artifact"] == str(default_model_path("onnx"))
    assert report["source"]["kind"] == "synthetic" and report["frames"]["processed"] == 8
    assert report["outputs"] == [] and report["fps"] > 0
    assert report["metrics"]["miou"] > 0.5  # a trained model on held-out frames, far above chance


def test_piped_output_keeps_each_table_row_on_one_line(tiny_onnx):
    """CI logs and `| tee` are not terminals: rich would assume 80 columns and fold cells over lines."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run(
        [*EDGESEG, "run", "--model", str(export_like(tiny_onnx, Path(env["EDGESEG_WORKDIR"]))), "--frames", "3"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.lstrip().startswith("CPU ms per frame"))
    assert "cores busy)" in line
    assert "│" not in out.stdout  # compact tables: no frame outside a terminal
    assert "\x1b[" not in out.stdout + out.stderr  # no colour codes or redrawn progress in a log


def test_run_says_where_its_outputs_went(tiny_onnx, tmp_path):
    write_video(tmp_path / "v.mp4", 4)
    out, log = tmp_path / "out.mp4", tmp_path / "frames.jsonl"
    r = run_cli(
        "--model", str(tiny_onnx()), "--video", str(tmp_path / "v.mp4"), "--save", str(out), "--log", str(log)
    )
    assert r.exit_code == 0, r.output
    flat = "".join(r.output.split())
    assert f"wrote{out}(--save)" in flat and f"wrote{log}(--log)" in flat
    assert out.is_file() and log.is_file()


def test_commands_that_run_engines_share_their_option_definitions():
    """--allow-other-gpu, --backend, --providers, --device and --card are defined once
    (edgeseg/cli/options.py), so every command that opens an artifact offers them alike."""
    import typer

    command = typer.main.get_command(app)
    ctx = command.make_context("edgeseg", ["run"], resilient_parsing=True)
    for shared in ("--allow-other-gpu", "--card"):
        helps = set()
        for name in ("run", "eval", "ros2"):
            params = {o: p for p in command.get_command(ctx, name).params for o in p.opts}
            assert shared in params, (name, shared)
            helps.add(params[shared].help)
        assert len(helps) == 1, (shared, helps)
    for shared in ("--backend", "--providers", "--device"):
        helps = {
            next(p.help for p in command.get_command(ctx, name).params if shared in p.opts)
            for name in ("run", "ros2")
        }
        assert len(helps) == 1, (shared, helps)


def test_a_run_off_a_terminal_reports_status_lines_now_and_then(tiny_onnx, monkeypatch):
    """Off a terminal (a log, systemd's journal) a long run prints a plain status line every
    LOG_STATUS_INTERVAL_S instead of nothing until its report; a short run prints none."""
    import edgeseg.cli.run as run_module

    model = tiny_onnx(num_classes=8, size=(32, 64))
    quiet = run_cli("--model", str(model), "--synthetic", "--frames", "5")
    assert quiet.exit_code == 0, quiet.output
    assert not [ln for ln in quiet.stderr.splitlines() if " FPS" in ln and "frames" in ln]
    monkeypatch.setattr(run_module, "LOG_STATUS_INTERVAL_S", 0.0)  # every status tick is "long"
    r = run_cli("--model", str(model), "--synthetic", "--frames", "20")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if " FPS" in ln and " frames" in ln]
    assert lines and all("\x1b" not in ln for ln in lines)  # plain lines, no terminal codes
