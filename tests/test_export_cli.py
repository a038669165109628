"""`edgeseg export` on the command line: model resolution, outputs, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402

torch.set_num_threads(1)
SMALL = "fcn8s_lite"  # the smallest registered net (about 10M parameters, seconds to export)
SIZE = ["--height", "64", "--width", "96", "--parity-scenes", "1"]


@pytest.fixture(scope="module")
def small_model() -> str:
    from edgeseg.models import list_models

    if SMALL not in list_models():
        pytest.skip(f"{SMALL} is not registered")
    return SMALL


def run(*args: str):
    return CliRunner().invoke(app, ["export", *args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error:"), result.output
    return lines[-1]


def test_random_weights_export_warns_loudly_and_writes_into_workspace(small_model, _isolated_workdir: Path):
    r = run(small_model, *SIZE, "--json")
    assert r.exit_code == 0, r.output
    assert "RANDOM weights" in r.output  # CliRunner mixes stderr into output
    data = json.loads(r.output[r.output.index("{") :])
    onnx_path = _isolated_workdir / small_model / f"{small_model}.onnx"
    assert data["path"] == str(onnx_path) and onnx_path.is_file()
    assert (_isolated_workdir / small_model / f"{small_model}.card.json").is_file()
    assert data["parity"]["passed"] and data["parity"]["agreement"] >= 0.999
    assert data["input_size"] == [64, 96] and data["opset"] == 17
    assert data["trt"]["errors"] == []
    assert data["simplifier"] == "onnxsim+onnxslim"  # static FCN graph: onnxslim drops no-op crop Slices
    assert data["nodes_final"] < data["nodes_exported"]

    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.runtime.segmenter import Segmenter

    seg = Segmenter(onnx_path)
    assert seg.classes == list(SYNTH_CLASSES) and seg.card.extra["random_weights"] is True


def test_newest_checkpoint_is_used_and_table_is_printed(small_model, _isolated_workdir: Path):
    from edgeseg.card import ModelCard, default_palette
    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.models import create_model
    from edgeseg.workspace import new_run_dir

    net = create_model(small_model, num_classes=4)
    card = ModelCard(
        model=small_model, classes=["a", "b", "c", "d"], palette=default_palette(4), input_size=(64, 64),
        model_kwargs=dict(net.edgeseg_kwargs),
    )  # fmt: skip
    ckpt = new_run_dir(_isolated_workdir, small_model) / "best.pt"
    save_checkpoint(ckpt, net.state_dict(), card)
    r = run(small_model, "--parity-scenes", "1", "--name", "mine", "--output", "labels")
    assert r.exit_code == 0, r.output
    assert "RANDOM" not in r.output
    assert "TensorRT compatibility" in r.output and "ArgMax" in r.output and "parity" in r.output
    from edgeseg.runtime.segmenter import Segmenter

    seg = Segmenter(_isolated_workdir / "mine" / "mine.onnx")
    assert seg.classes == ["a", "b", "c", "d"] and seg.card.input_size == (64, 64)  # the checkpoint's size
    assert seg.card.output == "labels" and seg.card.checkpoint_sha256


def test_unknown_model_lists_valid_names(small_model):
    line = one_line_error(run("fcn8ss"))
    assert "unknown model 'fcn8ss'" in line and small_model in line and "did you mean" in line


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a torch file")
    assert "cannot read checkpoint" in one_line_error(run(str(bad)))
    assert "checkpoint not found" in one_line_error(run(str(tmp_path / "missing.pt")))


def test_plain_state_dict_that_does_not_fit_is_one_line_error(small_model, tmp_path):
    w = tmp_path / "w.pt"
    torch.save({"conv.weight": torch.zeros(1)}, w)
    assert "does not fit" in one_line_error(run(small_model, "--weights", str(w), *SIZE))


def test_bad_option_is_one_line_error(small_model):
    assert "--output must be" in one_line_error(run(small_model, *SIZE, "--output", "probs"))
    assert "--simplifier must be" in one_line_error(run(small_model, "--simplifier", "magic"))


def test_onnx_input_is_redirected_to_build(tiny_onnx):
    assert "already ONNX" in one_line_error(run(str(tiny_onnx())))


def test_fp16_flag_writes_checked_fp16_copy(small_model, _isolated_workdir: Path):
    r = run(small_model, *SIZE, "--fp16", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[r.output.index("{") :])
    assert data["fp16"]["path"].endswith(f"{small_model}.fp16.onnx")
    assert data["fp16"]["agreement"] >= 0.995
    # off a terminal every step is a line as it starts: a long trace is announced, not silent
    lines = [ln for ln in r.output.splitlines() if "(step " in ln]
    assert [ln.rsplit("(step ", 1)[1] for ln in lines] == [f"{i}/5)" for i in range(1, 6)]
    assert lines[0].startswith("exporting with the TorchScript")
    assert lines[-1].startswith("converting to FP16")


def test_parity_failure_prints_evidence_and_writes_nothing(monkeypatch, _isolated_workdir: Path):
    """A net whose trace differs from eager PyTorch: the command fails in one line after the report."""
    from test_export import BranchyNet, make_card, seeded

    from edgeseg.export import onnx_export

    def fake_source(model, *, root, weights=None, choice=None):
        return onnx_export.ExportSource(seeded(BranchyNet()), make_card(), "test net")

    monkeypatch.setattr(onnx_export, "resolve_source", fake_source)
    r = run("branchy", "--parity-scenes", "1")
    line = one_line_error(r)
    assert "parity check failed" in line and "nothing was written" in line
    assert "TensorRT compatibility" in r.output and "FAIL" in r.output
    assert not (_isolated_workdir / "tinyseg" / "tinyseg.onnx").exists()
    assert not (_isolated_workdir / "tinyseg" / "tinyseg.card.json").exists()
