"""INT8 artifacts appear under their final name only after their accuracy gate passed: Ctrl-C during
the gate leaves nothing that `run NAME.int8.cpu` could pick up, and a rebuild whose gate fails keeps
the previous good artifact and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from onnx_models import card_of, save_with_card
from tmpfs import tmpfs_at
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.errors import ExitCode

runner = CliRunner()
BUILD = [
    "build",
    "--int8",
    "--int8-forms",
    "cpu",
    "--calib-data",
    "synth",
    "--calib-images",
    "4",
    "--eval-images",
    "4",
    "--max-miou-drop",  # the tiny net's one conv loses ~10 points in INT8; in float it would be no INT8
    "50",
]


@pytest.fixture
def export(tiny_onnx, _isolated_workdir) -> Path:
    """A tiny model where `edgeseg export` puts one."""
    dst = _isolated_workdir / "tiny" / "tiny.onnx"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(tiny_onnx(name="tiny").read_bytes())
    return dst


def int8_files(folder: Path) -> list[str]:
    """Every INT8 file, hidden staging copies included."""
    return sorted(p.name for p in folder.iterdir() if "int8" in p.name)


def test_ctrl_c_during_the_gate_leaves_no_unchecked_int8(export, monkeypatch):
    from edgeseg.calib.gate import Gate

    score = Gate.score
    seen: list[bool] = []

    def interrupted_while_scoring(self, path, what="evaluating INT8"):
        seen.append((export.parent / "tiny.int8.cpu.onnx").exists())
        raise KeyboardInterrupt

    monkeypatch.setattr(Gate, "score", interrupted_while_scoring)
    r = runner.invoke(app, BUILD)
    monkeypatch.setattr(Gate, "score", score)
    assert r.exit_code == ExitCode.INTERRUPTED, r.output
    assert seen == [False]  # the candidate being scored never had the deployable name
    assert int8_files(export.parent) == []  # nor is a staging copy left behind


def test_a_rebuild_whose_gate_fails_keeps_the_previous_good_artifact(export, monkeypatch):
    from edgeseg.calib.gate import Gate

    first = runner.invoke(app, [*BUILD, "--json"])
    assert first.exit_code == 0, first.output
    good = export.parent / "tiny.int8.cpu.onnx"
    before = good.read_bytes(), (export.parent / "tiny.int8.cpu.card.json").read_text()

    monkeypatch.setattr(Gate, "drop_points", lambda self, score: 80.0)  # this calibration loses badly
    again = runner.invoke(app, [*BUILD, "--max-fallback-layers", "0", "--json"])
    assert again.exit_code == ExitCode.GATE_FAILED, again.output
    assert "kept the previous tiny.int8.cpu.onnx" in again.stderr
    row = json.loads(again.stdout)["artifacts"][-1]
    assert "kept the previous" in row["note"] and row["size_bytes"] == 0
    assert (good.read_bytes(), (export.parent / "tiny.int8.cpu.card.json").read_text()) == before
    assert int8_files(export.parent) == ["tiny.int8.cpu.card.json", "tiny.int8.cpu.onnx"]


def test_a_failed_gate_removes_an_unchecked_leftover(export, monkeypatch):
    """An INT8 file whose card records no passed gate (left by an older edgeseg) is not kept."""
    from edgeseg.calib.gate import Gate

    (export.parent / "tiny.int8.cpu.onnx").write_bytes(export.read_bytes())
    monkeypatch.setattr(Gate, "drop_points", lambda self, score: 80.0)
    r = runner.invoke(app, [*BUILD, "--max-fallback-layers", "0", "--json"])
    assert r.exit_code == ExitCode.GATE_FAILED, r.output
    assert "removed an unchecked" in json.loads(r.stdout)["artifacts"][-1]["note"]
    assert int8_files(export.parent) == []


def test_a_passing_int8_file_is_written_once_and_never_read_back(export, monkeypatch):
    """Each candidate is made and scored in memory; the one that passes is written once, under its
    final name, with the gate's verdict already in its card."""
    import onnx

    from edgeseg.calib import quantize

    saved: list[str] = []
    read: list[str] = []
    save_with_card, load = quantize.save_with_card, onnx.load

    def counting_save(model, target, card):
        saved.append(Path(target).name)
        return save_with_card(model, target, card)

    def counting_load(f, *args, **kwargs):
        read.append(Path(str(f)).name)
        return load(f, *args, **kwargs)

    monkeypatch.setattr(quantize, "save_with_card", counting_save)
    monkeypatch.setattr(onnx, "load", counting_load)
    r = runner.invoke(app, [*BUILD, "--int8-forms", "cpu,qdq"])
    assert r.exit_code == 0, r.output
    assert sorted(saved) == ["tiny.int8.cpu.onnx", "tiny.int8.qdq.onnx"]
    assert [name for name in read if "int8" in name] == []
    for form in ("cpu", "qdq"):
        card = json.loads((export.parent / f"tiny.int8.{form}.card.json").read_text())
        assert card["extra"]["int8"]["gate"]["passed"] is True
        props = {p.key: p.value for p in load(str(export.parent / f"tiny.int8.{form}.onnx")).metadata_props}
        assert '"gate"' in props["edgeseg.extra"]  # the verdict is in the ONNX metadata too
    assert int8_files(export.parent) == [
        "tiny.int8.cpu.card.json", "tiny.int8.cpu.onnx", "tiny.int8.qdq.card.json", "tiny.int8.qdq.onnx",
    ]  # fmt: skip


# --- a disk that fills up during the build ----------------------------------------------------------
def _wide_model(path: Path) -> None:
    """Four 64-channel 3x3 convs (~450 KB): the build's files and temporary files are big enough to
    fill a small disk at a chosen step."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, prev, cin = [], [], "input", 3
    for i in range(4):
        w = (rng.normal(size=(64, cin, 3, 3)) * (2 / (9 * cin)) ** 0.5).astype(np.float32)
        weights += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(64, np.float32), f"b{i}"),
        ]
        nodes += [helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]  # fmt: skip
        prev, cin = f"r{i}", 64
    w = (rng.normal(size=(8, 64, 1, 1)) * 0.1).astype(np.float32)
    weights += [numpy_helper.from_array(w, "wo"), numpy_helper.from_array(np.zeros(8, np.float32), "bo")]
    nodes.append(helper.make_node("Conv", [prev, "wo", "bo"], ["logits"]))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 64])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 8, 32, 64])
    graph = helper.make_graph(nodes, "wide", [x], [y], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    save_with_card(model, path, card_of(8, (32, 64), "wide"))


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wide") / "wide.onnx"
    _wide_model(path)
    return path


# The build's writes in the order it makes them; a disk with more room gets further down the list.
WRITES = ("work/wide/wide.fp16.onnx", "work/wide/wide.fp16.card.json", "work/wide/wide.calib.json",
          "tmp/edgeseg-calib-", "tmp/edgeseg-quant-")  # fmt: skip
PAGE = 4096  # tmpfs gives space by the page


def _build_on_a_disk_with(free_pages: int, wide_model: Path, where: Path) -> int:
    """Build `wide` (FP16 and INT8) on a real 4 MiB tmpfs holding the export and $TMPDIR with only
    `free_pages` left; check that a failure is exit 6 with one line naming a path and that every file
    under a final name is whole. Returns how far down WRITES the build got (len(WRITES): it passed)."""
    import os
    import subprocess
    import sys

    import onnx

    mount = where / f"disk{free_pages}"
    mount.mkdir()
    with tmpfs_at(mount, "4m") as refused:
        if refused:
            pytest.skip(f"cannot mount a tmpfs here: {refused}")
        export = mount / "work" / "wide"
        export.mkdir(parents=True)
        (mount / "tmp").mkdir()
        (export / "wide.onnx").write_bytes(wide_model.read_bytes())
        fs = os.statvfs(mount)
        with open(mount / "filler", "wb") as fh:
            fh.write(b"\0" * (fs.f_bavail * fs.f_frsize - free_pages * PAGE))
        env = {**os.environ, "TMPDIR": str(mount / "tmp"), "EDGESEG_WORKDIR": str(mount / "work")}
        r = subprocess.run(
            [sys.executable, "-m", "edgeseg", "build", "wide", "--fp16", "--int8", "--calib-data", "synth:8",
             "--calib-images", "8", "--eval-data", "synth:4", "--max-miou-drop", "100"],
            capture_output=True, text=True, env=env, cwd=mount, timeout=600,
        )  # fmt: skip
        for path in export.iterdir():  # each file under its final name is whole, failed or not
            if path.suffix == ".onnx":
                onnx.checker.check_model(onnx.load(str(path)))
            else:
                assert path.suffix == ".json" and json.loads(path.read_text())
        left = [p.name for p in mount.rglob("*") if "partial" in p.name or "inferred" in p.name]
        assert not left and not list((mount / "tmp").glob("edgeseg-*"))
        if r.returncode == 0:
            return len(WRITES)
        assert r.returncode == ExitCode.OUTPUT_FAILED, r.stderr
        error = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
        assert len(error) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "o space left on device" in error[0], error[0]
        named = [i for i, w in enumerate(WRITES) if f"error: cannot write {mount}/{w}" in error[0]]
        assert named, f"the error names none of the build's writes: {error[0]}"
        return named[0]


# 16 builds in subprocesses (the walk and the bisection): 366 s of a full suite on 2 cores at load 10,
# most of the 600 s every other test gets; a busier CI machine must not turn that into a failure
@pytest.mark.timeout(1800)
def test_a_disk_filling_up_mid_build_is_exit_6_naming_the_path_and_leaves_no_half_file(wide_model, tmp_path):
    """A build that runs out of space at each of its writes in turn (finals, cards, statistics, the
    calibrator's and the quantizer's temporaries): one line naming the path, exit 6, and every file
    under a final name complete (a full disk used to leave wide-inferred.onnx half written beside the
    export and end with "Wire format was corrupt", exit 2, or a traceback-like exit 1). The free space
    that stops each write is found here, not written down: it differs a page or two between machines."""
    fp16_pages = -(-len(_fp16_bytes(wide_model)) // PAGE)
    reached = {}
    pages = fp16_pages - 1  # the FP16 file cannot fit; then one page more each run until calibration
    while not reached or max(reached.values()) < WRITES.index("tmp/edgeseg-calib-"):
        assert pages < fp16_pages + 16, f"no write after the FP16 file was reached in 16 pages: {reached}"
        reached[pages] = _build_on_a_disk_with(pages, wide_model, tmp_path)
        pages += 1
    low, high = pages - 1, 512  # 2 MiB free: the build passes; the last page count that fails names
    assert _build_on_a_disk_with(high, wide_model, tmp_path) == len(WRITES)  # the last write
    while high - low > 1:
        middle = (low + high) // 2
        reached[middle] = _build_on_a_disk_with(middle, wide_model, tmp_path)
        low, high = (low, middle) if reached[middle] == len(WRITES) else (middle, high)
    steps = [reached[p] for p in sorted(reached)]
    assert steps == sorted(steps), f"more room stopped the build earlier: {reached}"
    assert set(steps) == set(range(len(WRITES) + 1)), f"not every write ran out of space: {reached}"


def _fp16_bytes(wide_model: Path) -> bytes:
    """The FP16 file as the build writes it, measured on a roomy disk (its size sets where to look)."""
    import os
    import subprocess
    import sys

    work = wide_model.parent / "roomy"
    if not (work / "wide" / "wide.fp16.onnx").exists():
        (work / "wide").mkdir(parents=True, exist_ok=True)
        (work / "wide" / "wide.onnx").write_bytes(wide_model.read_bytes())
        r = subprocess.run(
            [sys.executable, "-m", "edgeseg", "build", "wide", "--fp16", "--eval-data", "synth:4"],
            capture_output=True, text=True, env={**os.environ, "EDGESEG_WORKDIR": str(work)}, timeout=600,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    return (work / "wide" / "wide.fp16.onnx").read_bytes()
