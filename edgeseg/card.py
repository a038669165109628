"""The model card: the metadata every edgeseg artifact carries.

Checkpoints, ONNX files (as `metadata_props`), engines (as a sidecar JSON) all embed the same card,
so the runtime knows classes, palette, mean/std, input size and output kind without the user
passing them by hand. Torch-free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgeseg._version import __version__
from edgeseg.errors import EdgesegError

OutputKind = Literal["logits", "labels"]
Precision = Literal["fp32", "fp16", "int8"]
ResizeMode = Literal["stretch", "letterbox"]

METADATA_PREFIX = "edgeseg."
IGNORE_INDEX = 255
MIN_INPUT_SIDE = 8  # the smallest input height/width edgeseg trains and exports (export refuses less)
MAX_INPUT_SIDE = 8192  # the largest: one 8192x8192 float frame is already 800 MB through a net
NATIVE = "native"  # an inference size (BackendOptions.input_size): each frame at its own size

# ImageNet statistics in 0..1 RGB scale, used by torchvision backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelCard:
    """What a deployed segmentation artifact needs to be used correctly."""

    model: str
    classes: list[str]
    palette: list[tuple[int, int, int]]
    input_size: tuple[int, int] = (512, 1024)  # (height, width) the net was exported/trained for
    mean: tuple[float, float, float] = IMAGENET_MEAN  # RGB, 0..1 scale
    std: tuple[float, float, float] = IMAGENET_STD
    color_order: Literal["RGB", "BGR"] = "RGB"  # channel order the net expects
    layout: Literal["NCHW"] = "NCHW"
    resize: ResizeMode = "stretch"
    output: OutputKind = "logits"
    precision: Precision = "fp32"
    # the graph's axes kept apart: `dynamic` is height and width, `dynamic_batch` the batch axis alone
    # (several streams batch their frames). With dynamic height and width, `input_size` is the stated
    # inference size frames are resized to, as for a fixed graph; `native_size` runs each frame at its
    # own size instead, padded to the stride (a different cost and accuracy: asked for, never implied)
    dynamic: bool = False
    dynamic_batch: bool = False
    native_size: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_sha256: str | None = None
    edgeseg_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)
    # read from a card written before edgeseg kept the axes apart (no `dynamic_batch` in it): its
    # `dynamic` meant N, H and W, and edgeseg then ran each frame at its own size, where frames are now
    # resized to `input_size` unless --native-size asks; reports say so. Never written (to_dict)
    predates_dynamic_hw: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        self.palette = [tuple(int(c) for c in rgb) for rgb in self.palette]  # type: ignore[misc]
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.mean = tuple(float(m) for m in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(s) for s in self.std)  # type: ignore[assignment]
        if len(self.palette) < len(self.classes):
            self.palette = list(self.palette) + default_palette(len(self.classes))[len(self.palette) :]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        del d["predates_dynamic_hw"]  # how it was read, not what the model is
        d["palette"] = [list(rgb) for rgb in self.palette]
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Any, source: str = "") -> ModelCard:
        """The one way a card comes in from outside (a card JSON, ONNX metadata, an engine's sidecar,
        a checkpoint): every field checked by `check_card` first, so a bad card is one line naming
        the field and where it came from."""
        return cls(**check_card(d, source))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save_json(self, path: str | Path) -> None:
        from edgeseg.atomic import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load_json(cls, path: str | Path) -> ModelCard:
        try:
            data = json.loads(_read_card_file(Path(path)))
        except FileNotFoundError:
            raise EdgesegError(f"model card not found: {path}") from None
        except IsADirectoryError:
            raise EdgesegError(f"model card {path} is a folder, not a JSON file") from None
        except OSError as exc:
            raise EdgesegError(f"cannot read model card {path}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EdgesegError(f"model card {path} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and "card" in data and isinstance(data["card"], dict):
            data = data["card"]  # sidecars wrap the card with build information
        return cls.from_dict(data, str(path))

    def to_metadata_props(self) -> dict[str, str]:
        """Flatten to ONNX `metadata_props` (string -> string), one JSON value per field."""
        return {METADATA_PREFIX + k: json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_metadata_props(cls, props: dict[str, str], source: str = "") -> ModelCard:
        d = {}
        for key, value in props.items():
            if key.startswith(METADATA_PREFIX):
                try:
                    d[key[len(METADATA_PREFIX) :]] = json.loads(value)
                except json.JSONDecodeError:
                    raise EdgesegError(f"ONNX metadata {key!r} is not valid JSON") from None
        if not d:
            raise EdgesegError(
                "this ONNX file carries no edgeseg metadata; export it with `edgeseg export` "
                "or pass a model card (--card CARD.json)"
            )
        return cls.from_dict(d, source)


_ENUMS = {
    "color_order": ("RGB", "BGR"),
    "layout": ("NCHW",),
    "resize": ("stretch", "letterbox"),
    "output": ("logits", "labels"),
    "precision": ("fp32", "fp16", "int8"),
}


def check_card(d: Any, source: str = "") -> dict[str, Any]:
    """The card schema: `d` (parsed JSON) as ModelCard's keyword arguments, or one EdgesegError
    naming the field and `source` (the file it came from). Types, lengths (one colour per class),
    ranges (palette 0..255, input size 1..MAX_INPUT_SIDE, std nonzero), finite numbers and the
    known words of each enum; unknown keys are ignored (newer edgeseg versions may add some)."""
    where = f"model card {source}".rstrip()

    def bad(field_name: str, want: str, value: Any) -> EdgesegError:
        shown = json.dumps(value)[:60] if _jsonable(value) else type(value).__name__
        return EdgesegError(f"{where}: {field_name} must be {want}, got {shown}")

    if not isinstance(d, dict):
        raise EdgesegError(f"{where} must be a JSON object, got {_json_kind(d)}")
    missing = {"model", "classes", "palette"} - d.keys()
    if missing:
        raise EdgesegError(f"{where} is missing {sorted(missing)}; was this file made by edgeseg?")
    known = {f.name for f in dataclasses.fields(ModelCard)} - {"predates_dynamic_hw"}
    out = {k: v for k, v in d.items() if k in known}
    if not isinstance(d["model"], str):
        raise bad("model", "a string", d["model"])
    classes = d["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a non-empty list of class names", classes)
    palette = d["palette"]
    if not isinstance(palette, list) or len(palette) != len(classes):
        raise bad("palette", f"a list of {len(classes)} [R, G, B] colours (one per class)", palette)
    for i, rgb in enumerate(palette):
        if not isinstance(rgb, list) or len(rgb) != 3 or not all(_int(c) and 0 <= c <= 255 for c in rgb):
            raise bad(f"palette[{i}]", "[R, G, B] with integers 0..255", rgb)
    out["palette"] = [tuple(rgb) for rgb in palette]
    if "input_size" in d:
        size = d["input_size"]
        if (
            not isinstance(size, list)
            or len(size) != 2
            or not all(_int(v) and 1 <= v <= MAX_INPUT_SIDE for v in size)
        ):
            raise bad("input_size", f"[height, width] with integers 1..{MAX_INPUT_SIDE}", size)
        out["input_size"] = tuple(size)
    for name in ("mean", "std"):
        if name in d:
            values = d[name]
            if not isinstance(values, list) or len(values) != 3 or not all(_finite(v) for v in values):
                raise bad(name, "three finite numbers (R, G, B in the 0..1 scale)", values)
            if name == "std" and any(v <= 0 for v in values):
                raise bad(name, "three positive numbers (it divides every pixel)", values)
    for name, words in _ENUMS.items():
        if name in d and d[name] not in words:
            raise bad(name, " or ".join(words), d[name])
    for name, kind, want in (
        ("dynamic", bool, "true or false"),
        ("dynamic_batch", bool, "true or false"),
        ("native_size", bool, "true or false"),
        ("model_kwargs", dict, "an object"),
        ("extra", dict, "an object"),
        ("edgeseg_version", str, "a string"),
    ):
        if name in d and not isinstance(d[name], kind):
            raise bad(name, want, d[name])
    if d.get("checkpoint_sha256") is not None and not isinstance(d["checkpoint_sha256"], str):
        raise bad("checkpoint_sha256", "a string or null", d["checkpoint_sha256"])
    if d.get("native_size") is True and d.get("dynamic") is not True:
        raise bad("native_size", "false on a net whose height and width are fixed (dynamic: false)", True)
    if "dynamic_batch" not in d and d.get("dynamic"):
        out["dynamic_batch"] = True  # cards before the split: `dynamic` meant N, H and W
        out["predates_dynamic_hw"] = True
    return out


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _json_kind(v: Any) -> str:
    return {list: "a list", type(None): "null", str: "a string", bool: "a boolean"}.get(
        type(v), "a number" if isinstance(v, (int, float)) else type(v).__name__
    )


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """The Pascal VOC colour map, extended to any number of classes (bit-interleaved, deterministic)."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash used for provenance (checkpoint -> ONNX -> engine)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


MAX_CARD_BYTES = 1 << 20  # a card is a few kB even with hundreds of classes


def _read_card_file(path: Path) -> str:
    """The text of a card file, which must be a regular file of card size: a FIFO nobody writes
    would block the read for ever, and /dev/zero or a huge file would fill the memory."""
    import stat

    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(st.st_mode):
        raise EdgesegError(f"model card {path} is not a regular file (a device or FIFO), not a JSON file")
    if st.st_size > MAX_CARD_BYTES:
        raise EdgesegError(
            f"model card {path} is {st.st_size} bytes, not a model card (at most {MAX_CARD_BYTES})"
        )
    return path.read_text()
