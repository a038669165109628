"""Training: overfitting a handful of generated scenes, checkpoint round trip, exact resume, CLI errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgeseg.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.training import TrainConfig, config_for_resume, train  # noqa: E402

TINY = "tiny_testnet"


def _tiny_net(num_classes: int, width: int = 16):
    """Two-scale conv net (a few thousand parameters): enough to overfit small scenes."""
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.full = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
            self.down = nn.Sequential(
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                nn.BatchNorm2d(2 * width),
                nn.ReLU(),
                nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2),
                nn.BatchNorm2d(2 * width),
                nn.ReLU(),
            )
            self.head = nn.Conv2d(3 * width, num_classes, 3, padding=1)

        def forward(self, x):
            f = self.full(x)
            d = nn.functional.interpolate(
                self.down(f), size=f.shape[-2:], mode="bilinear", align_corners=False
            )
            return self.head(torch.cat([f, d], 1))

    return Tiny()


def _register_tiny() -> None:
    from edgeseg.models import list_models, register_model

    if TINY not in list_models():
        register_model(TINY, summary="test-only tiny net")(_tiny_net)


class Scenes:
    """`edgeseg.data` dataset contract over a few generated scenes held in memory."""

    def __init__(self, n: int, hw=(32, 48), seed: int = 0) -> None:
        from edgeseg.data.synth import SYNTH_CLASSES, SYNTH_PALETTE, SceneGenerator

        gen = SceneGenerator(hw[0], hw[1], seed=seed)
        self.items = [gen.scene(i) for i in range(n)]
        self.classes, self.palette = list(SYNTH_CLASSES), list(SYNTH_PALETTE)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]

    def listing_hash(self) -> str:
        return f"scenes-{len(self.items)}"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    _register_tiny()


def _cfg(**kw) -> TrainConfig:
    base = dict(model=TINY, data="test-scenes", epochs=2, batch_size=2, height=32, width=48, lr=0.05, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_tiny_model_overfits_a_handful_of_scenes(tmp_path):
    data = Scenes(4, hw=(32, 48))
    cfg = _cfg(
        epochs=200, batch_size=4, optimizer="adamw", lr=1e-2, augment=False, model_kwargs={"width": 24}
    )
    result = train(cfg, train_set=data, val_set=data)
    assert result.best_miou > 0.9, result.history[-1]
    # the best checkpoint, evaluated through the deployed path, reproduces the training-time validation
    from edgeseg.evaluate import evaluate

    assert evaluate(result.best, data).miou == pytest.approx(result.best_miou, abs=1e-6)


def test_checkpoint_roundtrip(tmp_path):
    data = Scenes(4)
    result = train(_cfg(epochs=1), train_set=data, val_set=data)
    assert result.run_dir.parent.name == TINY and result.run_dir.parent.parent.name == "train"
    payload = load_checkpoint(result.last)
    card = payload["card"]
    assert card.model == TINY and card.classes == data.classes and card.input_size == (32, 48)
    assert card.palette == [tuple(c) for c in data.palette]
    assert payload["data_hash"] == "scenes-4"
    assert payload["metrics"]["miou"] == pytest.approx(result.metrics.miou)
    state = payload["train_state"]
    assert state["epoch"] == 1 and state["config"]["model"] == TINY and "optimizer" in state
    model, card2 = model_from_checkpoint(result.best)
    x = torch.randn(1, 3, 32, 48)
    result.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), result.model(x))
    from edgeseg import workspace

    assert (
        workspace.newest_checkpoint(workspace.workdir(), TINY) == result.best
    )  # what `edgeseg export` picks


def test_resume_continues_the_schedule_exactly():
    data = Scenes(6)
    cfg = _cfg(epochs=3, warmup_iters=2, schedule="cosine")
    full = train(cfg, train_set=data, val_set=data)

    class Interrupt(Exception):
        pass

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, train_set=data, val_set=data, on_epoch=stop_after_two)
    from edgeseg.training import find_resume
    from edgeseg.workspace import workdir

    last = find_resume("auto", workdir(), TINY)
    assert load_checkpoint(last)["train_state"]["epoch"] == 2
    cfg2 = config_for_resume(last, {"model": TINY, "data": "test-scenes"})
    assert cfg2 == cfg
    resumed = train(cfg2, resume=last, train_set=data, val_set=data)
    assert resumed.run_dir == last.parent
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    # lr at every epoch end (incl. after the resume) equals the uninterrupted run's
    for a, b in zip(resumed.history, full.history):
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-12, abs=1e-15)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    for (k, a), b in zip(resumed.model.state_dict().items(), full.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_resuming_from_best_pt_continues_in_a_new_run_folder():
    """Continuing from best.pt in place would replace the run's later last.pt: a run continues in its
    folder only from its last.pt, and from any other checkpoint in a new folder that leaves it whole."""
    data = Scenes(4)
    lines: list[str] = []
    first = train(_cfg(epochs=2), train_set=data, val_set=data)
    before = {p.name: p.read_bytes() for p in first.run_dir.iterdir()}
    assert {"best.pt", "last.pt", "history.json"} <= set(before)
    resumed = train(_cfg(epochs=3), resume=first.best, train_set=data, val_set=data, log=lines.append)
    assert resumed.run_dir != first.run_dir and resumed.run_dir.parent == first.run_dir.parent
    assert {p.name: p.read_bytes() for p in first.run_dir.iterdir()} == before
    start = load_checkpoint(first.best)["train_state"]["epoch"]
    assert [r["epoch"] for r in resumed.history][start:] == list(range(start + 1, 4))
    assert load_checkpoint(resumed.last)["train_state"]["epoch"] == 3
    said = f"resuming from {first.best} in a new run folder, {resumed.run_dir} (only a last.pt continues"
    assert any(line.startswith(said) for line in lines), lines


def test_a_resumed_run_whose_folder_holds_an_input_is_refused_before_work(tmp_path):
    data = Scenes(2)
    first = train(_cfg(epochs=1), train_set=data, val_set=data)
    before = {p.name: p.read_bytes() for p in first.run_dir.iterdir()}
    cfg = _cfg(epochs=2, weights=str(first.best))
    with pytest.raises(EdgesegError, match="the resumed run's folder .* holds the input --weights"):
        train(cfg, resume=first.last, train_set=data, val_set=data)
    assert {p.name: p.read_bytes() for p in first.run_dir.iterdir()} == before


def test_schedules_shape():
    from edgeseg.training.schedule import LrFactor

    poly = LrFactor("poly", total=100, warmup=10)
    assert poly(0) == pytest.approx(1 / 11) and poly(10) == pytest.approx(1.0)
    assert poly(55) == pytest.approx(0.5**0.9) and poly(100) == 0.0
    cos = LrFactor("cosine", total=100)
    assert cos(0) == 1.0 and cos(50) == pytest.approx(0.5) and cos(100) == pytest.approx(0.0)


def test_bad_config_is_one_line_error():
    with pytest.raises(EdgesegError, match="unknown optimizer"):
        _cfg(optimizer="lamb")
    with pytest.raises(EdgesegError, match="--batch-size must be at least 1"):
        _cfg(batch_size=0)


def test_resume_of_finished_run_explains():
    data = Scenes(2)
    result = train(_cfg(epochs=1), train_set=data, val_set=data)
    with pytest.raises(EdgesegError, match="already finished 1 epochs; pass --epochs > 1"):
        train(_cfg(epochs=1), resume=result.last, train_set=data, val_set=data)


def test_cli_corrupt_checkpoint_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from edgeseg.cli import app

    good = tmp_path / "good.pt"
    torch.save({"format": "edgeseg-checkpoint/1", "model": {"w": torch.zeros(64, 64)}}, good)
    bad = tmp_path / "broken.pt"
    bad.write_bytes(good.read_bytes()[:-5000])  # a download / copy cut short
    r = CliRunner().invoke(app, ["eval", str(bad), "--data", "synth:2"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot read checkpoint"), r.output
    r = CliRunner().invoke(app, ["train", TINY, "--data", "synth:2", "--resume", str(bad)])
    assert r.exit_code == 2 and "error: cannot read checkpoint" in r.output
    assert "Traceback" not in r.output


def test_eval_cli_checkpoint_and_onnx_export_agree(tmp_path):
    """Same numbers across the chain: `edgeseg eval` on best.pt and on its ONNX export."""
    import json

    from typer.testing import CliRunner

    from edgeseg.cli import app
    from edgeseg.data import open_dataset
    from edgeseg.export.onnx_export import export_onnx

    data = open_dataset("synth:6@32x48", split="train")
    result = train(_cfg(epochs=3), train_set=data, val_set=data)
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(result.best, onnx_path)
    runner = CliRunner()
    scores = {}
    for artifact in (result.best, onnx_path):
        r = runner.invoke(app, ["eval", str(artifact), "--data", "synth:5@40x60", "--json"])
        assert r.exit_code == 0, r.output
        scores[artifact.suffix] = json.loads(r.stdout)
    assert scores[".pt"]["images"] == 5 and scores[".pt"]["pixels"] == 5 * 40 * 60
    assert abs(scores[".pt"]["miou"] - scores[".onnx"]["miou"]) < 1e-3
    for name, iou in scores[".pt"]["per_class_iou"].items():
        other = scores[".onnx"]["per_class_iou"][name]
        assert (iou is None) == (other is None) and (iou is None or abs(iou - other) < 5e-3), name
    # a model name resolves to its newest checkpoint; --plots writes the PNGs
    r = runner.invoke(app, ["eval", TINY, "--data", "synth:2@32x48", "--plots", str(tmp_path / "plots")])
    assert r.exit_code == 0, r.output
    assert "mIoU" in r.output and sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "confusion_matrix.png",
        "per_class_iou.png",
    ]


def test_train_cli_end_to_end_on_generated_scenes():
    import json

    from typer.testing import CliRunner

    from edgeseg.cli import app

    args = ["train", TINY, "--data", "synth:4@32x48", "--epochs", "1", "--batch-size", "2"]
    args += ["--height", "32", "--width", "48", "--val-limit", "3", "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["best_epoch"] == 1 and summary["best"].endswith("best.pt")
    payload = load_checkpoint(summary["best"])
    assert payload["card"].input_size == (32, 48)
    assert payload["data_hash"]  # the synthetic listing hash
    r = CliRunner().invoke(
        app, ["train", TINY, "--data", "synth:4@32x48", "--resume", "auto", "--epochs", "2"]
    )
    assert r.exit_code == 0, r.output
    assert "resuming with changed epochs" in r.output
    state = load_checkpoint(summary["last"])["train_state"]
    assert state["epoch"] == 2
    assert state["history"][1]["lr"] > 0  # the schedule was stretched to 2 epochs, not ended at 1


def test_slim_checkpoint_keeps_predictions(tmp_path):
    from edgeseg.training import slim_checkpoint

    data = Scenes(2)
    result = train(_cfg(epochs=1, optimizer="adamw"), train_set=data, val_set=data)
    slim = slim_checkpoint(result.best, tmp_path / "slim.pt")
    assert slim.stat().st_size < result.best.stat().st_size / 2  # no AdamW moments, FP16 weights
    payload = load_checkpoint(slim)
    assert payload["train_state"] == {} and payload["card"].extra["weights_dtype"] == "float16"
    full, _ = model_from_checkpoint(result.best)
    small, _ = model_from_checkpoint(slim)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert (full(x).argmax(1) == small(x).argmax(1)).float().mean() > 0.99


def test_crop_trains_on_windows_and_records_the_input_size(tmp_path):
    data = Scenes(2)
    result = train(_cfg(epochs=1, crop=(16, 24)), train_set=data, val_set=data, workdir=tmp_path)
    payload = load_checkpoint(result.last)
    assert tuple(payload["card"].input_size) == (32, 48)  # what the runtime feeds; crops are training-only
    assert tuple(payload["train_state"]["config"]["crop"]) == (16, 24)
    assert config_for_resume(result.last, {"crop": None}).crop == (16, 24)
    with pytest.raises(EdgesegError, match="--crop needs augmentation"):
        _cfg(crop=(16, 24), augment=False)


def test_header_says_what_is_trained_at_which_size_and_how_long_it_takes():
    from edgeseg.training.header import size_origin

    lines: list[str] = []
    cfg = _cfg(epochs=1, batch_size=1, height=24, width=36)
    train(
        cfg,
        train_set=Scenes(8, hw=(32, 48)),
        val_set=Scenes(3, hw=(32, 48), seed=1),
        progress=False,
        log=lines.append,
        size_origin=size_origin(explicit=True, resumed=False),
    )
    assert lines[0] == (
        f"train {TINY} on test-scenes: 8 images, 8 classes "
        "(sky, building, vegetation, road, sidewalk, lane_marking, vehicle, pedestrian)"
    )
    assert lines[1] == "validation each epoch: test-scenes, 3 images"
    assert lines[2] == (
        "input size 24x36 (set by --height/--width): the data is 32x48 (the first image; sizes may vary), "
        "resized to it as the runtime will (0.75x)"
    )
    assert lines[3].startswith("augmentation: random scale 0.5-1.75x, crop back to the input size")
    assert lines[4] == "batch 1: 8 steps per epoch, 1 epoch = 8 steps, on cpu"
    rest = [line for line in lines[5:] if not line.startswith("epoch 1 step")]  # no per-step log lines
    estimate = rest[0]
    assert estimate.startswith("time: ") and " s per step (steps 2-6) -> about " in estimate
    assert "for the 8 steps" in estimate and estimate.endswith("left), plus validation each epoch")
    assert rest[1].startswith("epoch 1/1  loss ")  # the estimate came before the epoch ended


def test_step_timer_estimates_from_the_steps_after_warm_up(monkeypatch):
    import edgeseg.training.header as header

    clock = iter(
        [5.0, 7.0, 9.0, 11.0, 13.0, 15.0, 17.0, 99.0]
    )  # when each step ends: 2 s each after the first
    monkeypatch.setattr(header.time, "perf_counter", lambda: next(clock))
    timer = header.StepTimer(total_steps=3000)
    lines = [timer.step() for _ in range(7)]
    assert lines[:5] == [None] * 5 and lines[6] is None  # said once, after steps 2-6
    assert lines[5] == (
        "time: 2 s per step (steps 2-6) -> about 1 h 40 min for the 3,000 steps (1 h 39 min left), "
        "plus validation each epoch"
    )
    assert header.StepTimer(total_steps=1).step() is None  # nothing to estimate
    assert [header.duration(s) for s in (44.6, 750, 7500)] == ["45 s", "12 min 30 s", "2 h 05 min"]
    assert header.time_left([30.0, 50.0], 3) == ", about 2 min 00 s left"


def test_train_cli_header_explains_the_default_input_size():
    from typer.testing import CliRunner

    from edgeseg.cli import app

    args = [
        "train",
        TINY,
        "--data",
        "synth:4@32x64",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--val-limit",
        "2",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (
        "input size 192x384 (edgeseg's default; set --height/--width to change it): the data is 32x64, "
        "resized to it as the runtime will (6x)"
    ) in r.stderr
    assert "train tiny_testnet on synth:4@32x64 (synth data, split train): 4 images, 8 classes" in r.stderr
    assert "validation each epoch: generated scenes from their own seed (2000003), 2 of 64 images" in r.stderr
    assert "batch 2: 2 steps per epoch, 1 epoch = 2 steps, on cpu" in r.stderr


@pytest.mark.parametrize(("disk", "named"), [("4m", "last.pt"), ("12m", "best.pt")])  # a checkpoint: 8.3 MiB
def test_a_disk_filling_up_during_training_is_exit_6_naming_the_checkpoint(tmp_path, disk, named):
    """Torch's checkpoint writer on a nearly full disk was a traceback: on a real tmpfs with room for
    the run's start but not every checkpoint, one line naming the file, exit 6, and no half file."""
    import subprocess
    import sys

    from tmpfs import tmpfs_at

    mount = tmp_path / "disk"
    mount.mkdir()
    with tmpfs_at(mount, disk) as refused:
        if refused:
            pytest.skip(f"cannot mount a tmpfs here: {refused}")
        r = subprocess.run(
            [sys.executable, "-m", "edgeseg", "train", "unet", "--backbone", "compact", "--data", "synth:4",
             "--epochs", "2", "--height", "64", "--width", "128", "--workdir", str(mount / "work")],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert r.returncode == 6 and "Traceback" not in r.stderr, r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and f"/{named}: no space left on device" in errors[0], r.stderr
        for path in (mount / "work").rglob("*"):
            assert "partial" not in path.name, path
            if path.suffix == ".pt":  # what is under a final name loads
                assert load_checkpoint(path)
