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

import re
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

    Rewriting replaces an earlier synthetic dataset completely (its scene files are deleted first,
    so a shorter rerun leaves no stale pairs); a folder holding other files is refused. classes.json
    is written last, so its presence marks a complete dataset.
    """
    from edgeseg.data.io import write_image, write_mask
    from edgeseg.data.plain import write_classes_file

    if int(num_images) < 1:
        raise EdgesegError(f"num_images must be >= 1, got {num_images}")
    if image_ext.lower() not in (".png", ".jpg", ".jpeg"):
        raise EdgesegError(f"image format must be .png or .jpg, got {image_ext!r}")
    out = Path(out_dir)
    gen = SceneGenerator(height, width, seed)
    old = [p for sub in ("images", "masks") if (out / sub).is_dir() for p in (out / sub).iterdir()]
    foreign = [p.name for p in old if not _SCENE_FILE.match(p.name)]
    if foreign:
        raise EdgesegError(
            f"{out} holds files that are not generated scenes (e.g. {foreign[0]}); write to a new folder"
        )
    (out / "classes.json").unlink(missing_ok=True)
    for p in old:
        p.unlink()
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(int(num_images)):
        rgb, mask = gen.scene(i)
        stem = f"scene_{i:06d}"
        write_image(out / "images" / f"{stem}{image_ext.lower()}", rgb)
        write_mask(out / "masks" / f"{stem}.png", mask)
        if progress is not None:
            progress("rendering scenes", i + 1, int(num_images))
    write_classes_file(out, SYNTH_CLASSES, SYNTH_PALETTE)
    return out


_SCENE_FILE = re.compile(r"^scene_\d{6,}\.(png|jpe?g)$")


# OpenCV builds differ in their encoders; these FourCCs are written *and* read back by the
# opencv-python wheels (H.264 'avc1' is often missing, so it is not used).
VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "VP80"}


def write_video(out_path: str | Path, num_frames: int, height: int, width: int, seed: int = HELDOUT_SEED,
                fps: float = 15.0, progress: Progress | None = None) -> tuple[Path, Path]:  # fmt: skip
    """Write a drive as a video plus exact ground truth ``masks/<video stem>_000000.png``, one per frame.

    Returns (video path, masks folder). The video is lossy, the masks are exact; frame k of the file
    pairs with mask k, named as `edgeseg run --labels` pairs video frames (``<stem>_<index:06d>``).
    The masks folder also gets a classes.json, so it reads like a dataset's masks. Rewriting a
    video deletes its earlier masks first, so a shorter rerun leaves no stale frames to pair with.
    """
    from edgeseg.atomic import atomic_path
    from edgeseg.data.io import write_mask
    from edgeseg.data.plain import write_classes_file

    out = Path(out_path)
    codec = VIDEO_CODECS.get(out.suffix.lower())
    if codec is None:
        raise EdgesegError(
            f"unsupported video suffix {out.suffix!r} for {out}; use one of {', '.join(VIDEO_CODECS)}"
        )
    if int(num_frames) < 1:
        raise EdgesegError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:  # else OpenCV's writer refuses to open, which reads like a codec problem
        raise EdgesegError(f"the frame rate must be positive (--fps), got {fps}")
    gen = SceneGenerator(height, width, seed)
    masks_dir = video_masks_dir(out)
    if masks_dir.is_dir():
        for p in masks_dir.glob(f"{out.stem}_[0-9]*.png"):
            p.unlink()
    masks_dir.mkdir(parents=True, exist_ok=True)
    write_classes_file(masks_dir, SYNTH_CLASSES, SYNTH_PALETTE)
    with atomic_path(out) as tmp:
        # VideoWriter picks the container from the suffix, so the temporary name must keep it.
        tmp_video = tmp.with_name(tmp.name + out.suffix)
        try:
            writer = cv2.VideoWriter(
                str(tmp_video), cv2.VideoWriter_fourcc(*codec), float(fps), (int(width), int(height))
            )
            if not writer.isOpened():
                raise EdgesegError(f"this OpenCV build cannot write {codec!r} video to {out}")
            try:
                for k, (rgb, mask) in enumerate(gen.video(int(num_frames), fps=fps)):
                    writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                    write_mask(masks_dir / f"{out.stem}_{k:06d}.png", mask)
                    if progress is not None:
                        progress("rendering video", k + 1, int(num_frames))
            finally:
                writer.release()
            if not tmp_video.exists() or tmp_video.stat().st_size == 0:
                raise EdgesegError(f"OpenCV wrote no video data for {out}")
            tmp_video.replace(tmp)
        finally:
            tmp_video.unlink(missing_ok=True)
    return out, masks_dir


def video_masks_dir(video_path: str | Path) -> Path:
    """Where `write_video` puts the ground-truth masks of `video_path` (a `masks/` folder beside it)."""
    return Path(video_path).with_name("masks")
