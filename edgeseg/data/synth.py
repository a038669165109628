"""Procedural road scenes with exact ground truth, for training, demos, calibration and stream tests.

No dataset can be downloaded here, so edgeseg ships a generator whose scenes are *learnable but not
trivial*: a pinhole camera looks down a street (road, sidewalks, verges, building facades, a distant
skyline) populated with trees, vehicles and pedestrians at many depths. Classes overlap in colour
(grey sky vs. grey walls vs. grey cars, green cars vs. trees) so a net must use texture, shape and
context (windows, tiles, leaf noise, lane geometry), while lighting, shadows, tint, blur and sensor
noise vary per scene so INT8 quantisation errors show up in the metrics.

Every scene is a pure function of ``(seed, index)`` (independent of call order) and a video is a
pure function of ``(seed, frame)``: the same street is rendered while the camera drives forward and
vehicles and pedestrians move, so consecutive frames are coherent. Everything is vectorised numpy /
OpenCV; a 256x512 scene renders in a few milliseconds. Torch-free.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.synth_layout import (  # noqa: F401  (re-exported: the public class ids)
    BUILDING,
    CYCLE,
    MARKING,
    PEDESTRIAN,
    ROAD,
    SIDEWALK,
    SKY,
    SYNTH_CLASSES,
    SYNTH_PALETTE,
    VEGETATION,
    VEHICLE,
    make_layout,
)
from edgeseg.data.synth_render import render
from edgeseg.defaults import MIN_VIDEO_FPS
from edgeseg.errors import EdgesegError
from edgeseg.progress import Progress

TRAIN_SEED = 0
"""Seed `edgeseg train --data synth` generates from."""
HELDOUT_SEED = 1_000_003
"""Seed of `open_dataset("synth:N")` (evaluation): held-out scenes never repeat training ones."""
VAL_SEED = 1_000_002
"""Seed of the ``val`` split: model selection during training never sees the evaluation scenes."""

GENERATOR_VERSION = 2
"""Bumped whenever a seed's pixels change, so caches keyed on it (calibration stats) regenerate."""
MIN_SIDE = 16


def has_street_classes(classes: list[str]) -> bool:
    """True when a model predicts exactly the generator's classes, so its scenes can serve as its data
    (calibration, the INT8 gate's ground truth) by default."""
    return list(classes) == list(SYNTH_CLASSES)


class SceneGenerator:
    """Deterministic road scenes and videos with per-pixel labels (see module docstring)."""

    classes: list[str] = SYNTH_CLASSES
    palette: list[tuple[int, int, int]] = SYNTH_PALETTE

    def __init__(self, height: int, width: int, seed: int = 0) -> None:
        if int(height) < MIN_SIDE or int(width) < MIN_SIDE:
            raise EdgesegError(
                f"synthetic scenes need at least {MIN_SIDE}x{MIN_SIDE} pixels, got {height}x{width}"
            )
        if int(seed) < 0:
            raise EdgesegError(f"seed must be >= 0, got {seed}")
        self.height, self.width, self.seed = int(height), int(width), int(seed)

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Scene `index`: (RGB uint8 HxWx3, class ids uint8 HxW); a pure function of (seed, index)."""
        if int(index) < 0:
            raise EdgesegError(f"scene index must be >= 0, got {index}")
        rng = self._rng(0, int(index))
        lay = make_layout(rng)
        cam_z = float(rng.uniform(0, CYCLE))
        t = float(rng.uniform(0, 60))  # scatters the moving actors; the street itself follows cam_z
        return render(lay, self.height, self.width, t, cam_z, rng)

    def video(
        self, num_frames: int, start: int = 0, fps: float = 15.0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Frames `start .. start+num_frames-1` of this seed's drive: one street, moving camera and actors."""
        if int(num_frames) < 0 or int(start) < 0:
            raise EdgesegError("num_frames and start must be >= 0")
        if fps <= 0:
            raise EdgesegError(f"fps must be > 0, got {fps}")
        lay = make_layout(self._rng(1))
        for k in range(int(start), int(start) + int(num_frames)):
            t = k / fps
            yield render(lay, self.height, self.width, t, lay.cam_speed * t, self._rng(2, k))


def write_dataset(out_dir: str | Path, num_images: int, height: int, width: int, seed: int = TRAIN_SEED,
                  progress: Progress | None = None, image_ext: str = ".png") -> Path:  # fmt: skip
    """Write scenes 0..num_images-1 in the plain-folder layout (images/*, masks/*.png, classes.json).

    Images are lossless PNG by default (bit-exact with `SceneGenerator.scene`); ``image_ext=".jpg"``
    makes them ~5x smaller at the cost of JPEG artefacts. Masks are always PNG.

    The dataset is written in a hidden folder beside `out_dir` and takes its name only when complete
    (`edgeseg.atomic.staged_folder`): Ctrl-C, SIGTERM or a full disk never leave half a dataset, or a
    mix of two, under the final name. `out_dir` may be new, an empty folder, or an earlier generated
    dataset (replaced whole); a folder holding anything else is refused before any work.
    """
    from edgeseg.atomic import staged_folder
    from edgeseg.data.io import write_image, write_mask
    from edgeseg.data.plain import write_classes_file
    from edgeseg.staging import clear_stale_staging

    if int(num_images) < 1:
        raise EdgesegError(f"num_images must be >= 1, got {num_images}")
    if image_ext.lower() not in (".png", ".jpg", ".jpeg"):
        raise EdgesegError(f"image format must be .png or .jpg, got {image_ext!r}")
    out = Path(out_dir)
    gen = SceneGenerator(height, width, seed)
    clear_stale_staging(out)  # a killed run's staging folder is not the user's file
    check_replaceable(out)
    with staged_folder(out) as stage:
        (stage / "images").mkdir()
        (stage / "masks").mkdir()
        for i in range(int(num_images)):
            rgb, mask = gen.scene(i)
            stem = f"scene_{i:06d}"
            write_image(stage / "images" / f"{stem}{image_ext.lower()}", rgb)
            write_mask(stage / "masks" / f"{stem}.png", mask)
            if progress is not None:
                progress("rendering scenes", i + 1, int(num_images))
        write_classes_file(stage, SYNTH_CLASSES, SYNTH_PALETTE)
    return out


def check_replaceable(out: Path) -> None:
    """`out` may be replaced by a generated dataset: it is missing, an empty folder, or a dataset this
    generator wrote (images/ and masks/ of scene files, classes.json). Anything else is the user's."""
    if not out.is_dir():
        return  # missing (a file there is refused by the writability check, and by the rename)
    for entry in sorted(out.iterdir()):
        if entry.name == "classes.json" and entry.is_file():
            continue
        if entry.name in ("images", "masks") and entry.is_dir():
            foreign = next(
                (p for p in sorted(entry.iterdir()) if not _SCENE_FILE.match(p.name) or not p.is_file()), None
            )
        else:  # a scene file at the top is a dataset's images/ or masks/ folder, not a dataset
            foreign = entry
        if foreign is not None:
            raise EdgesegError(
                f"{out} holds files that are not generated scenes (e.g. {foreign.relative_to(out)}); "
                "write to a new or empty folder (an earlier generated dataset is replaced whole)"
            )


_SCENE_FILE = re.compile(r"^scene_\d{6,}\.(png|jpe?g)$")


# OpenCV builds differ in their encoders; these FourCCs are written *and* read back by the
# opencv-python wheels (H.264 'avc1' is often missing, so it is not used).
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "VP80"}


def write_video(out_path: str | Path, num_frames: int, height: int, width: int, seed: int = HELDOUT_SEED,
                fps: float = 15.0, progress: Progress | None = None) -> tuple[Path, Path]:  # fmt: skip
    """Write a drive as a video plus exact ground truth ``masks/<video stem>_000000.png``, one per frame.

    Returns (video path, masks folder). The video is lossy, the masks are exact; frame k of the file
    pairs with mask k, named as `edgeseg run --labels` pairs video frames (``<stem>_<index:06d>``).
    The masks folder also gets a classes.json, so it reads like a dataset's masks. The video and its
    masks take their names together when complete: the masks are written into a staging copy of the
    masks folder (other videos' masks kept, this video's earlier ones dropped) that replaces it as the
    video is committed, so an interrupted rewrite leaves the previous video and masks as they were.
    A masks folder holding anything but generated masks is refused before any work.
    """
    from edgeseg.atomic import PendingFile, staged_folder
    from edgeseg.data.io import write_mask
    from edgeseg.data.plain import write_classes_file
    from edgeseg.staging import clear_stale_staging

    out = Path(out_path)
    codec = VIDEO_CODECS.get(out.suffix.lower())
    if codec is None:
        raise EdgesegError(
            f"unsupported video suffix {out.suffix!r} for {out}; use one of {', '.join(VIDEO_CODECS)}"
        )
    if int(num_frames) < 1:
        raise EdgesegError(f"num_frames must be >= 1, got {num_frames}")
    if not fps >= MIN_VIDEO_FPS:  # else OpenCV's writer refuses to open, which reads like a codec problem
        raise EdgesegError(f"the frame rate (--fps) must be at least {MIN_VIDEO_FPS:g}, got {fps}")
    gen = SceneGenerator(height, width, seed)
    masks_dir = video_masks_dir(out)
    clear_stale_staging(masks_dir)  # a killed run's staging folder is not a mask
    kept = _other_videos_masks(masks_dir, out.stem)
    pending = PendingFile(out, suffix=out.suffix)  # VideoWriter picks the container from the suffix
    with staged_folder(masks_dir, together=[pending]) as stage:
        for p in kept:
            _link_or_copy(p, stage / p.name)
        write_classes_file(stage, SYNTH_CLASSES, SYNTH_PALETTE)
        writer = cv2.VideoWriter(
            str(pending.path), cv2.VideoWriter_fourcc(*codec), float(fps), (int(width), int(height))
        )
        if not writer.isOpened():
            raise EdgesegError(f"this OpenCV build cannot write {codec!r} video to {out}")
        try:
            for k, (rgb, mask) in enumerate(gen.video(int(num_frames), fps=fps)):
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                write_mask(stage / f"{out.stem}_{k:06d}.png", mask)
                if progress is not None:
                    progress("rendering video", k + 1, int(num_frames))
        finally:
            writer.release()
        if pending.path.stat().st_size == 0:
            raise EdgesegError(f"OpenCV wrote no video data for {out}")
    return out, masks_dir


_MASK_FILE = re.compile(r"^.+_\d{6,}\.png$")


def _other_videos_masks(masks_dir: Path, stem: str) -> list[Path]:
    """The masks of other generated videos in `masks_dir` (kept when it is rewritten); a folder that
    holds anything else is the user's, and refused."""
    if not masks_dir.is_dir():
        return []
    kept = []
    for p in sorted(masks_dir.iterdir()):
        if p.name == "classes.json" and p.is_file():
            continue
        if not (_MASK_FILE.match(p.name) and p.is_file()):
            raise EdgesegError(
                f"{masks_dir} holds files that are not generated video masks (e.g. {p.name}); the masks "
                "of a video go in a masks/ folder beside it, so write the video to another folder"
            )
        if not re.fullmatch(rf"{re.escape(stem)}_\d{{6,}}\.png", p.name):
            kept.append(p)
    return kept


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same folder tree: no copy of the bytes
    except OSError:
        shutil.copy2(src, dst)


def video_masks_dir(video_path: str | Path) -> Path:
    """Where `write_video` puts the ground-truth masks of `video_path` (a `masks/` folder beside it)."""
    return Path(video_path).with_name("masks")
