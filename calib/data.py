"""Calibration images: where they come from, which ones are picked, and how they are fed.

A `--calib-data SPEC` is one of

    synth            scenes from the procedural generator (edgeseg.data.synth), seeded; the default,
                     but only for models of the generator's street classes (others must pass data)
    DIR              a dataset folder (images/+masks/, Pascal VOC, Cityscapes) or a plain folder of images
    VIDEO            a video file; frames are sampled evenly over its length
    GLOB             an image glob such as 'frames/*.jpg' (quote it so the shell does not expand it)

Every image goes through `edgeseg.preprocess.Preprocessor(card)`, the exact preprocessing the runtime
uses, so activation ranges are measured on what the deployed net will really see.

The selection is deterministic for a given (source listing, N, seed): the cache key of the
calibration statistics is built from `CalibrationSet.listing_hash` plus N, seed and method.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeseg.card import IGNORE_INDEX, ModelCard
from edgeseg.defaults import CALIB_IMAGES
from edgeseg.errors import EdgesegError
from edgeseg.preprocess import Preprocessor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
SYNTH_SEED_OFFSET = 7_000_003  # keeps calibration scenes apart from training/held-out generator seeds
POOL_FACTOR = 4  # stratification looks at up to POOL_FACTOR * N candidate images


@dataclass
class CalibrationSet:
    """N selected calibration images (RGB uint8, loaded lazily) plus what identifies them."""

    spec: str
    kind: str  # synth | dataset | images | video
    names: list[str]
    loader: Callable[[int], np.ndarray]  # position in `names` -> RGB uint8 HxWx3
    listing_hash: str  # identifies the source listing (not the selection)
    seed: int
    classes_covered: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # the label set of a dataset source
    note: str | None = None  # why this data may not suit the model (also printed as a warning)

    def __len__(self) -> int:
        return len(self.names)

    def image(self, i: int) -> np.ndarray:
        return self.loader(i)

    def batches(self, card: ModelCard) -> Iterator[np.ndarray]:
        """Preprocessed 1x3xHxW float32 inputs, one per image, exactly as the runtime makes them."""
        pre = Preprocessor(card, input_bgr=False)
        for i in range(len(self)):
            yield pre(self.image(i))[0]

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "images": len(self),
            "seed": self.seed,
            "listing_hash": self.listing_hash,
            "classes_covered": self.classes_covered,
            **({"note": self.note} if self.note else {}),
        }


def _hash(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_listing(paths: list[Path]) -> list[list]:
    out = []
    for p in paths:
        st = p.stat()
        out.append([p.name if len(paths) == 1 else str(p), st.st_size, st.st_mtime_ns])
    return out


def stratified_pick(presence: list[np.ndarray], n: int, order: list[int]) -> tuple[list[int], list[int]]:
    """Pick `n` images so that every class present in the pool appears, rarest classes first.

    `presence[k]` holds the pixel count of each class in candidate k; `order` is the seeded shuffle of
    candidates. Rule: rank classes by how few candidates contain them; for each class not yet covered by
    the selection, add the candidate with the most pixels of that class (ties: earlier in `order`).
    When every class is covered (or N is reached) fill the remaining slots in `order`. This keeps rare
    classes (poles, signs) in the activation statistics, which plain random sampling often misses.
    Returns (chosen candidate positions in pick order, classes covered).
    """
    if not presence:
        return [], []
    counts = np.stack(presence)  # candidates x classes
    has = counts > 0
    rank = {k: r for r, k in enumerate(order)}
    chosen: list[int] = []
    covered: set[int] = set()
    images_with = has.sum(axis=0)
    for cls in sorted(np.flatnonzero(images_with), key=lambda c: (images_with[c], c)):
        if len(chosen) >= n:
            break
        if cls in covered:
            continue
        candidates = [k for k in np.flatnonzero(has[:, cls]) if k not in chosen]
        if not candidates:
            continue
        best = max(candidates, key=lambda k: (counts[k, cls], -rank[k]))
        chosen.append(int(best))
        covered.update(int(c) for c in np.flatnonzero(has[best]))
    for k in order:
        if len(chosen) >= n:
            break
        if k not in chosen:
            chosen.append(int(k))
    return chosen, sorted(covered)


def _class_pixels(mask: np.ndarray, num_classes: int) -> np.ndarray:
    m = mask.reshape(-1)
    m = m[m != IGNORE_INDEX]
    return np.bincount(m.astype(np.int64), minlength=num_classes)[:num_classes]


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise EdgesegError(f"cannot read calibration image {path} (corrupt or unsupported format)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def from_images(
    paths: list[Path], spec: str, n: int, seed: int, exclude: Collection[str] = ()
) -> CalibrationSet:
    """N images picked at random (seeded); `exclude`: names not to pick while others remain (the
    calibration images, when the gate evaluates on the same folder)."""
    if not paths:
        raise EdgesegError(
            f"no images found for calibration data {spec!r} ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    paths = held_out([str(p) for p in paths], exclude, spec, paths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(paths))[: min(n, len(paths))]
    picked = [paths[int(i)] for i in sorted(order)]
    return CalibrationSet(
        spec=spec,
        kind="images",
        names=[str(p) for p in picked],
        loader=lambda i: _read_image(picked[i]),
        listing_hash=_hash(["images", _file_listing(paths)]),
        seed=seed,
    )


def from_video(path: Path, n: int, seed: int, exclude: Collection[str] = ()) -> CalibrationSet:
    """N frames spread evenly over the clip (deterministic; `seed` only enters the cache key), named
    `<file>#<frame index>`; `exclude` as for `from_images`."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise EdgesegError(f"cannot open video {path} (unreadable or unsupported codec)")
        frames: list[np.ndarray] = []
        names: list[str] = []
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if total > 0:
            free = held_out(
                [f"{path.name}#{i}" for i in range(total)], exclude, str(path), list(range(total))
            )
            spread = np.linspace(0, len(free) - 1, num=min(n, len(free)))
            wanted = sorted({free[int(round(x))] for x in spread})
            names = [f"{path.name}#{i}" for i in wanted]
            idx = 0
            want_set = set(wanted)
            while len(frames) < len(wanted):
                ok, frame = cap.read()
                if not ok:
                    break
                if idx in want_set:
                    frames.append(frame)
                idx += 1
        else:  # container without a frame count: read all, then sample
            all_frames = []
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                all_frames.append(frame)
            if all_frames:
                count = len(all_frames)
                free = held_out(
                    [f"{path.name}#{i}" for i in range(count)], exclude, str(path), list(range(count))
                )
                spread = np.linspace(0, len(free) - 1, num=min(n, len(free)))
                picked = sorted({free[int(round(x))] for x in spread})
                frames = [all_frames[i] for i in picked]
                names = [f"{path.name}#{i}" for i in picked]
    finally:
        cap.release()
    if not frames:
        raise EdgesegError(f"no frames could be decoded from video {path}")
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    return CalibrationSet(
        spec=str(path),
        kind="video",
        names=names[: len(rgb)],
        loader=lambda i: rgb[i],
        listing_hash=_hash(["video", _file_listing([path]), total]),
        seed=seed,
    )


def from_dataset(dataset, spec: str, n: int, seed: int, num_classes: int | None) -> CalibrationSet:
    """A dataset with masks: stratified pick over a seeded pool of candidates."""
    size = len(dataset)
    if size == 0:
        raise EdgesegError(f"calibration dataset {spec!r} is empty")
    rng = np.random.default_rng(seed)
    perm = [int(i) for i in rng.permutation(size)]
    pool = perm[: min(size, max(n, POOL_FACTOR * n))]
    ncls = num_classes or len(getattr(dataset, "classes", [])) or 256
    presence = [_class_pixels(dataset[i][1], ncls) for i in pool]
    chosen, covered = stratified_pick(presence, n, list(range(len(pool))))
    indices = [pool[k] for k in chosen]
    names = [str(dataset.name(i)) if hasattr(dataset, "name") else str(i) for i in indices]
    listing = dataset.listing_hash() if hasattr(dataset, "listing_hash") else _hash(names)
    return CalibrationSet(
        spec=spec,
        kind="dataset",
        names=names,
        loader=lambda i: dataset[indices[i]][0],
        listing_hash=_hash(["dataset", listing]),
        seed=seed,
        classes_covered=covered,
        classes=list(getattr(dataset, "classes", [])),
    )


def from_synth(card: ModelCard, n: int, seed: int) -> CalibrationSet:
    """Generated scenes at the net's input size, stratified over a pool of POOL_FACTOR * N scenes."""
    from edgeseg.data import synth as synth_mod
    from edgeseg.data.synth import SYNTH_CLASSES, SceneGenerator

    h, w = card.input_size
    gen_seed = SYNTH_SEED_OFFSET + seed
    gen = SceneGenerator(h, w, seed=gen_seed)
    pool = POOL_FACTOR * n
    presence = [_class_pixels(gen.scene(i)[1], len(SYNTH_CLASSES)) for i in range(pool)]
    chosen, covered = stratified_pick(presence, n, list(range(pool)))
    # scenes are pure functions of (seed, index): re-render the chosen ones on demand instead of
    # holding the whole pool in memory (4N full-size frames)
    version = getattr(synth_mod, "GENERATOR_VERSION", 1)  # regenerate stats if the generator changes
    return CalibrationSet(
        spec="synth",
        kind="synth",
        names=[f"synth#{gen_seed}/{k}" for k in chosen],
        loader=lambda i: gen.scene(chosen[i])[0],
        listing_hash=_hash(["synth", gen_seed, h, w, pool, version]),
        seed=seed,
        classes_covered=covered,
    )


def _classes_text(classes: list[str]) -> str:
    return f"{len(classes)}: {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}"


def needs_data_error(card: ModelCard, option: str = "--calib-data") -> EdgesegError:
    """The generated street scenes are the default data only for models of the street classes."""
    return EdgesegError(
        f"{card.model} predicts its own classes ({_classes_text(card.classes)}), not the street scenes "
        f"edgeseg generates: pass {option} with images like those it will see (a folder, a video or an "
        "image glob)"
    )


def is_synth_spec(spec: str) -> bool:
    return spec == "synth" or spec.startswith(("synth:", "synth[", "synth@"))


def require_calibration_data(spec: str | None, card: ModelCard) -> None:
    """Fail before any work when INT8 has no data to calibrate on (see `open_calibration`)."""
    from edgeseg.data.synth import has_street_classes

    if not (spec or "").strip() and not has_street_classes(card.classes):
        raise needs_data_error(card)


def open_calibration(
    spec: str | None, card: ModelCard, n: int = CALIB_IMAGES, seed: int = 0
) -> CalibrationSet:
    """Resolve `--calib-data SPEC` into N selected calibration images (see the module docstring).

    Without SPEC the generated street scenes are used, but only for a model of the street classes;
    any other model must say what it will see. Data labelled with other classes than the model's (the
    street scenes included) is used as asked, with a warning.
    """
    from edgeseg.console import warn
    from edgeseg.data.synth import SYNTH_CLASSES

    if n < 1:
        raise EdgesegError(f"--calib-images must be at least 1, got {n}")
    require_calibration_data(spec, card)
    spec = (spec or "synth").strip()
    if is_synth_spec(spec):
        calib = from_synth(card, n, seed)
        _warn_other_classes(calib, list(SYNTH_CLASSES), card, warn)
        return calib
    calib = _open_source(spec, card, n, seed)
    if calib.kind == "dataset":
        _warn_other_classes(calib, calib.classes, card, warn)
    return calib


def _warn_other_classes(calib: CalibrationSet, data_classes: list[str], card: ModelCard, warn) -> None:
    if list(data_classes) != list(card.classes):
        calib.note = (
            f"calibration data {calib.spec} shows other classes ({_classes_text(data_classes)}) than "
            f"{card.model} predicts ({_classes_text(card.classes)}): INT8 ranges measured on it may not "
            "fit what the model will see; pass --calib-data with the model's own kind of images"
        )
        warn(calib.note)


def held_out(names: list[str], exclude: Collection[str], spec: str, items: list) -> list:
    """`items` whose name is not in `exclude`; all of them (with a warning) when none would remain."""
    if not exclude:
        return items
    if len(names) != len(items):  # (zip's strict= is 3.10+; this part also runs on 3.8)
        raise ValueError(f"{len(names)} names for {len(items)} items")
    kept = [item for name, item in zip(names, items) if name not in exclude]
    if kept:
        return kept
    from edgeseg.console import warn

    warn(f"every image of {spec} was used for calibration: the gate evaluates on those same images")
    return items


def open_images(
    spec: str, n: int, seed: int, what: str = "calibration data", exclude: Collection[str] = ()
) -> CalibrationSet:
    """N images from a glob, a video, one image or a folder of images (no labels read); `exclude`:
    names to leave out while others remain (see `from_images`)."""
    if any(ch in spec for ch in "*?["):
        paths = sorted(Path(p) for p in globlib.glob(spec, recursive=True))
        paths = [p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        return from_images(paths, spec, n, seed, exclude)
    path = Path(spec).expanduser()
    if not path.exists():
        raise EdgesegError(f"{what} not found: {spec} (a folder, video, image glob, or 'synth')")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return from_video(path, n, seed, exclude)
        if suffix in IMAGE_SUFFIXES:
            return from_images([path], spec, n, seed, exclude)
        raise EdgesegError(f"{what} {path.name} is neither an image nor a video ({suffix})")
    if not any(path.iterdir()):
        raise EdgesegError(f"{what} folder {path} is empty")
    return from_images(_images_in(path), spec, n, seed, exclude)


def _open_source(spec: str, card: ModelCard, n: int, seed: int) -> CalibrationSet:
    """A labelled dataset folder (stratified pick) when the readers recognise one, else images."""
    path = Path(spec).expanduser()
    if path.is_dir() and any(path.iterdir()):
        dataset = try_dataset(path)
        if dataset is not None:
            return from_dataset(dataset, spec, n, seed, card.num_classes)
    return open_images(spec, n, seed)


def try_dataset(path: Path):
    """A labelled dataset in `path` if the data readers recognise one, else None (plain image folder)."""
    try:
        from edgeseg.data import open_dataset
    except ImportError:
        return None
    try:
        ds = open_dataset(str(path))
    except EdgesegError:
        return None
    return ds if len(ds) else None
