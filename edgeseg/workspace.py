"""Where artifacts live, so each command finds the previous one's output without paths.

    <workdir>/train/<model>/<run-id>/{best.pt,last.pt,history.json}   (edgeseg train)
    <workdir>/<name>/<name>.onnx + <name>.card.json                   (edgeseg export)
    <workdir>/<name>/<name>.<variant>.onnx / .engine (+ .json)        (edgeseg build)

`<workdir>` is `--workdir`, else $EDGESEG_WORKDIR, else ./edgeseg-work.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from edgeseg.errors import EdgesegError

DEFAULT_WORKDIR = "edgeseg-work"


def workdir(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("EDGESEG_WORKDIR") or DEFAULT_WORKDIR)


def train_root(root: Path, model: str) -> Path:
    return root / "train" / model


def new_run_dir(root: Path, model: str) -> Path:
    """A fresh, sortable run directory for a training run."""
    base = train_root(root, model)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = base / stamp
    i = 1
    while run.exists():
        run = base / f"{stamp}-{i}"
        i += 1
    run.mkdir(parents=True)
    return run


def newest_checkpoint(root: Path, model: str) -> Path | None:
    """The newest training run's best checkpoint (else last) for `model`, or None."""
    base = train_root(root, model)
    if not base.is_dir():
        return None
    candidates = []
    for run in base.iterdir():
        for name in ("best.pt", "last.pt"):
            ckpt = run / name
            if ckpt.is_file():
                candidates.append((run.stat().st_mtime, run.name, ckpt))
                break
    if not candidates:
        return None
    return max(candidates)[2]


def export_dir(root: Path, name: str) -> Path:
    return root / name


def export_path(root: Path, name: str) -> Path:
    return export_dir(root, name) / f"{name}.onnx"


def newest_export(root: Path) -> Path | None:
    """The most recently exported base ONNX (<name>/<name>.onnx) in the workspace, or None."""
    if not root.is_dir():
        return None
    found = [
        (p.stat().st_mtime, p) for d in root.iterdir() if d.is_dir() and (p := d / f"{d.name}.onnx").is_file()
    ]
    return max(found)[1] if found else None


def require_export(root: Path, model: str | None) -> Path:
    """Resolve a build input: a path, an exported model name, or the newest export."""
    if model:
        p = Path(model)
        if p.suffix == ".onnx":
            if not p.is_file():
                raise EdgesegError(f"ONNX file not found: {p}")
            return p
        candidate = export_path(root, model)
        if candidate.is_file():
            return candidate
        raise EdgesegError(f"no export named {model!r} in {root}; run `edgeseg export {model}` first")
    newest = newest_export(root)
    if newest is None:
        raise EdgesegError(f"no exported model in {root}; run `edgeseg export MODEL` first")
    return newest
