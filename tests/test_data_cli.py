"""`edgeseg data synth|info` end to end, and edgeseg.data staying torch-free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tmpfs import tmpfs_at
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.data import open_dataset
from edgeseg.data.synth import SYNTH_CLASSES


def _run(*args: str):
    return CliRunner().invoke(app, ["data", *args])


def test_synth_then_info(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    r = _run("synth", str(out), "--num", "4", "--height", "40", "--width", "72", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert len(list((out / "images").glob("*.png"))) == 4
    r = _run("info", str(out), "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["format"] == "plain" and info["images"] == 4 and info["scanned"] == 4
    assert [c["name"] for c in info["classes"]] == SYNTH_CLASSES
    assert info["sizes"] == [{"height": 40, "width": 72, "count": 4}]
    counted = sum(c["pixels"] for c in info["classes"]) + info["ignored_pixels"]
    assert counted == 4 * 40 * 72
    assert abs(sum(c["frequency"] for c in info["classes"]) - 1) < 1e-9
    r = _run("info", str(out))
    assert r.exit_code == 0 and "class pixel frequencies" in r.output and "lane_marking" in r.output
    r = _run("synth", str(tmp_path / "jpg"), "--num", "2", "--height", "24", "--width", "32", "--jpg")
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "jpg" / "images").glob("*.jpg"))) == 2
    assert len(open_dataset(tmp_path / "jpg")) == 2


def test_synth_video(tmp_path: Path) -> None:
    r = _run(
        "synth",
        str(tmp_path / "v" / "drive.avi"),
        "--video",
        "--frames",
        "5",
        "--height",
        "32",
        "--width",
        "48",
    )
    assert r.exit_code == 0, r.output
    cap = cv2.VideoCapture(str(tmp_path / "v" / "drive.avi"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()
    masks = sorted((tmp_path / "v" / "masks").glob("drive_*.png"))
    assert len(masks) == 5
    assert cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED).shape == (32, 48)


def test_info_errors_are_one_line(tmp_path: Path) -> None:
    r = _run("info", str(tmp_path / "missing"))
    assert r.exit_code == 2
    assert "error: dataset not found" in r.output and "Traceback" not in r.output
    (tmp_path / "junk").mkdir()
    r = _run("info", str(tmp_path / "junk"))
    assert r.exit_code == 2 and "unknown dataset layout" in r.output
    r = _run("synth", str(tmp_path / "x"), "--num", "0")
    assert r.exit_code == 2 and "--num" in r.output and "greater than or equal to 1" in r.output


def test_preview(tmp_path: Path) -> None:
    r = _run("preview", "synth:3@24x48", str(tmp_path / "sheet.png"), "--num", "2", "--tile-width", "64")
    assert r.exit_code == 0, r.output
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape == (2 * 32, 2 * 64, 3)
    r = _run("preview", "synth:1@24x48", str(tmp_path / "sheet.xyz"))
    assert r.exit_code == 2 and "suffix" in r.output


def test_info_synth_spec() -> None:
    r = _run("info", "synth:2@24x32", "--json", "--masks-only")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["format"] == "synth" and info["images"] == 2
    assert np.isclose(sum(c["frequency"] for c in info["classes"]), 1.0)


def test_data_package_is_torch_free(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import edgeseg.data, edgeseg.data.synth, edgeseg.data.synthset, edgeseg.data.dataset_stats\n"
        "import edgeseg.data.plain, edgeseg.data.voc, edgeseg.data.cityscapes, edgeseg.data.augment\n"
        "edgeseg.data.open_dataset('synth:1@16x16')[0]\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_preview_hatches_ignore_pixels_so_no_class_colour_looks_like_them() -> None:
    """Ignore pixels used to be grey (128) beside grey classes (the street scenes' building is 70,70,70):
    now black-and-white hatching, which no palette colour can be."""
    import numpy as np

    from edgeseg.card import IGNORE_INDEX
    from edgeseg.data.preview import preview_grid
    from edgeseg.data.synth import SYNTH_CLASSES, SYNTH_PALETTE

    class Tiny:
        palette = SYNTH_PALETTE
        classes = list(SYNTH_CLASSES)

        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int):
            mask = np.full((32, 64), SYNTH_CLASSES.index("building"), np.uint8)
            mask[:, 32:] = IGNORE_INDEX
            return np.zeros((32, 64, 3), np.uint8), mask

        def name(self, i: int) -> str:
            return ""

    labels = preview_grid(Tiny(), [0], tile_width=64)[:, 64:]
    building = tuple(int(c) for c in SYNTH_PALETTE[SYNTH_CLASSES.index("building")][::-1])
    assert tuple(labels[20, 10]) == building
    ignored = labels[16:, 32:].reshape(-1, 3)
    colours = {tuple(int(c) for c in px) for px in ignored}
    assert colours == {(0, 0, 0), (255, 255, 255)}
    r = _run("preview", "--help")
    assert "hatching = ignore" in " ".join(r.output.split()) and "grey" not in r.output


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("video", [False, True], ids=["dataset", "video"])
def test_a_stopped_synth_leaves_the_earlier_output_whole_and_no_half_one(sig, video, tmp_path: Path) -> None:
    """data synth rewriting an earlier dataset (or video and its masks), stopped halfway by a signal:
    exit 143/130, the earlier output byte for byte, and no staging folder or half file left anywhere."""
    import os
    import signal
    import time

    from edgeseg.data.synth import write_dataset, write_video

    out = tmp_path / ("clip.avi" if video else "ds")
    if video:
        write_video(out, 3, 32, 48)
    else:
        write_dataset(out, 3, 32, 48)
    before = _tree(tmp_path)
    args = ["--video", "--frames", "100000"] if video else ["--num", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseg", "data", "synth", str(out), *args, "--height", "32", "--width", "48"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the new output is on its way: masks in a staging folder
            staged = [p for d in tmp_path.rglob(".*.partial") for p in d.rglob("*.png")]
            if len(staged) >= 5:
                break
            time.sleep(0.1)
        assert len(staged) >= 5, proc.stderr and proc.poll()
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == (143 if sig == "SIGTERM" else 130), err
    assert "Traceback" not in err
    assert _tree(tmp_path) == before
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no staging folder/file


def test_synth_into_a_linked_or_mounted_folder_keeps_the_folder(tmp_path: Path) -> None:
    """An existing OUT is filled in place of its old entries, never renamed: a symlink to a folder
    stays a link, and a mount point (a container's volume), which cannot be renamed, works."""
    import os

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    r = _run("synth", str(tmp_path / "link"), "--num", "2", "--height", "24", "--width", "32")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "link").is_symlink() and len(open_dataset(tmp_path / "real")) == 2
    volume = tmp_path / "volume"
    volume.mkdir()
    with tmpfs_at(volume, "4m") as refused:
        if refused:
            return  # mounting needs root (CI runs as root); the symlink case above ran
        for num in ("3", "2"):
            r = _run("synth", str(volume), "--num", num, "--height", "24", "--width", "32")
            assert r.exit_code == 0, r.output
        assert os.path.ismount(volume) and len(open_dataset(volume)) == 2
        assert sorted(os.listdir(volume)) == ["classes.json", "images", "masks"]


def test_synth_replaces_an_earlier_dataset_whole_and_keeps_other_videos_masks(tmp_path: Path) -> None:
    r = _run("synth", str(tmp_path / "ds"), "--num", "4", "--height", "24", "--width", "32")
    assert r.exit_code == 0, r.output
    r = _run("synth", str(tmp_path / "ds"), "--num", "2", "--height", "24", "--width", "32", "--jpg")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "ds" / "images").iterdir()) == [
        "scene_000000.jpg",
        "scene_000001.jpg",
    ]
    for name, frames in (("a.avi", 3), ("b.avi", 2), ("a.avi", 2)):
        r = _run(
            "synth",
            str(tmp_path / name),
            "--video",
            "--frames",
            str(frames),
            "--height",
            "24",
            "--width",
            "32",
        )
        assert r.exit_code == 0, r.output
    masks = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert masks == ["a_000000.png", "a_000001.png", "b_000000.png", "b_000001.png", "classes.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("kind", ["new", "earlier", "video"])
def test_a_killed_synth_leaves_staging_that_the_next_synth_removes(kind, tmp_path: Path) -> None:
    """A real SIGKILL (nothing can be finalised) halfway through data synth leaves its hidden staging
    folder (and the video's half file); the next synth of the same OUT removes them, as they name a
    process of this machine that is gone, and writes OUT. It used to leave the beside-OUT folder
    forever, and to refuse an earlier dataset for ever after ('holds files that are not generated
    scenes (e.g. .edgeseg.x.partial)')."""
    import signal
    import time

    from edgeseg.data.synth import write_dataset

    out = tmp_path / ("clip.avi" if kind == "video" else "ds")
    if kind == "earlier":
        write_dataset(out, 3, 32, 48)
    args = ["--video", "--frames", "100000"] if kind == "video" else ["--num", "100000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseg", "data", "synth", str(out), *args, "--height", "32", "--width", "48"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        staged: list[Path] = []
        while len(staged) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            staged = [p for d in tmp_path.rglob(".*.partial") for p in d.rglob("*.png")]
        assert len(staged) >= 5, proc.poll()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = [p for p in tmp_path.rglob(".*") if ".partial" in p.name]
    assert left  # what SIGKILL leaves: nothing could remove it
    r = _run("synth", str(out), *args[:-1], "3", "--height", "32", "--width", "48")
    assert r.exit_code == 0, r.output
    assert not [p for p in tmp_path.rglob(".*")], "staging left"
    if kind == "video":
        assert sorted(p.name for p in (tmp_path / "masks").iterdir())[-1] == "clip_000002.png"
    else:
        assert len(open_dataset(out)) == 3


def test_staging_of_a_live_writer_or_of_another_machine_is_left_alone(tmp_path: Path) -> None:
    """Only staging whose process is known gone is removed: a live pid's (two synths to one parent at
    once) and one written on another machine or container (a shared folder; its pids mean nothing
    here) stay; one of a process that has ended goes."""
    import os

    from edgeseg.staging import remove_stale_staging, staging_prefix

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    ours = staging_prefix("ds")
    live = tmp_path / f"{ours}a1.partial"
    dead = tmp_path / f"{ours.replace(f'-{os.getpid()}-', f'-{ended.pid}-')}b2.partial"
    other = tmp_path / f".ds.{'0' * 16}-{ended.pid}-c3.partial"  # another machine's owner token
    mine_but_other_target = tmp_path / f"{staging_prefix('other')}d4.partial".replace(
        f"-{os.getpid()}-", f"-{ended.pid}-"
    )
    for folder in (live, dead, other, mine_but_other_target):
        (folder / "images").mkdir(parents=True)
    assert remove_stale_staging(tmp_path, "ds") == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, other, mine_but_other_target)
    )


_KILLED_MID_SWAP = """
import os, signal, sys
from pathlib import Path
from edgeseg import atomic

real_rename, moved = os.rename, []

def rename(src, dst):
    real_rename(src, dst)
    moved.append(dst)
    if len(moved) == 1:  # one old entry set aside, the other still in place: killed outright now
        os.kill(os.getpid(), signal.SIGKILL)

os.rename = rename
with atomic.staged_folder(sys.argv[1]) as stage:
    (Path(stage) / "new.txt").write_text("new")
"""


def test_a_writer_killed_in_the_middle_of_a_swap_leaves_nothing_the_next_write_keeps(tmp_path: Path) -> None:
    """SIGKILL between the renames that swap an existing folder's entries (signals are held there, but
    SIGKILL and a power cut cannot be): the old entries set aside are in a hidden folder named as
    staging is, which the next write into that folder removes with the writer gone (it used to be a
    `.edgeseg.*.old` folder no write ever removed)."""
    from edgeseg.atomic import staged_folder

    out = tmp_path / "ds"
    out.mkdir()
    (out / "a.txt").write_text("old a")
    (out / "b.txt").write_text("old b")
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_SWAP, str(out)], capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert len(hidden) == 2 and all(
        name.endswith(".partial") for name in hidden
    )  # its stage and the set-aside
    with staged_folder(out) as stage:
        (stage / "again.txt").write_text("again")
    assert sorted(p.name for p in out.iterdir()) == ["again.txt"]
