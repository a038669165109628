"""INT8 artifacts appear under their final name only after their accuracy gate passed: Ctrl-C during
the gate leaves nothing that `run NAME.int8.cpu` could pick up, and a rebuild whose gate fails keeps
the previous good artifact and says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
