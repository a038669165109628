"""Where artifacts live, so each command finds the previous one's output without paths.

    <workdir>/train/<model>/<run-id>/{best.pt,last.pt,history.json}   (edgeseg train)
    <workdir>/<name>/<name>.onnx + <name>.card.json                   (edgeseg export)
    <workdir>/<name>/<name>.<variant>.onnx / .engine (+ .json)        (edgeseg build)

`<workdir>` is `--workdir`, else $EDGESEG_WORKDIR, else ./edgeseg-work.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from edgeseg.errors import EdgesegError

DEFAULT_WORKDIR = "edgeseg-work"


def workdir(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("EDGESEG_WORKDIR") or DEFAULT_WORKDIR)


def writable_workdir(path: str | os.PathLike[str] | None = None) -> Path:
    """The workspace a command will write into, checked now (a read-only or mistyped one fails in
    the first second, not after training or calibration)."""
    from edgeseg.output_checks import check_writable

    root = workdir(path)
    check_writable(root, "--workdir" if path else "the workspace", folder=True)
    return root


@contextlib.contextmanager
def build_lock(folder: Path) -> Iterator[None]:
    """One `edgeseg build` at a time in an export's folder (they share intermediate and output names):
    a second one is refused in one line while the first holds `.edgeseg-build.lock` (flock(2), as pip
    and apt lock; the kernel drops the lock when its holder dies, so a killed build never blocks).
    The holder removes the file before it lets go, and a build that locked a file already removed
    tries again, so two builds never hold two different files."""
    import fcntl

    path = folder / ".edgeseg-build.lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            from edgeseg.errors import output_failed

            raise output_failed(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise EdgesegError(
                f"another edgeseg build (pid {holder}) is writing in {folder}; wait for it to finish "
                "(or build a copy of the export elsewhere)"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder before us removed it as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


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


def check_name(name: str, option: str = "--name") -> str:
    """An export's name is one folder name inside the workspace, never a path: `../x` or `a/b`
    would write outside --workdir (or where no later command looks)."""
    if not name or name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise EdgesegError(
            f"{option} {name!r} must be a plain name (letters, digits, -_.; no '/', '\\' or leading '.'), not a path"
        )
    if len(os.fsencode(name)) > 200:
        raise EdgesegError(f"{option} is {len(os.fsencode(name))} bytes long; keep it under 200")
    return name


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


def root_of(export: Path) -> Path:
    """The workspace an export lives in (`<root>/<name>/<name>.onnx` -> `<root>`)."""
    return Path(export).resolve().parent.parent


def find_artifact(
    spec: str | None, root: Path, *, backend: str | None = None, checkpoint_first: bool = False
) -> Path:
    """What `run` and `eval` take as the model: a file; an export's NAME or NAME.VARIANT (its ONNX or
    engine); a model's newest training checkpoint; or nothing: the newest export in the workspace,
    else the shipped default model. `backend` restricts the file types; `checkpoint_first` prefers a
    training run over an export of the same name (eval scores the PyTorch model it just trained)."""
    from edgeseg.artifacts import BACKEND_SUFFIXES, is_artifact

    wanted = BACKEND_SUFFIXES.get(backend) if backend else None
    if backend is not None and wanted is None:
        raise EdgesegError(f"unknown --backend {backend!r}; choose one of {', '.join(BACKEND_SUFFIXES)}")
    if spec is None or spec == "default":
        path = _default_artifact(root, backend, use_workspace=spec is None)
    elif Path(spec).is_file():  # a folder called like the model (e.g. the export dir) is not the model
        path = Path(spec)
    elif is_artifact(spec) or "/" in spec:
        if Path(spec).is_dir():
            raise EdgesegError(f"{spec} is a folder, not a model file (.onnx, .engine, .pt)")
        if Path(spec).exists():
            raise EdgesegError(f"{spec} is not a regular file (a device or FIFO), not a model file")
        raise EdgesegError(f"artifact not found: {spec}")
    else:
        path = _named_artifact(root, spec, backend, checkpoint_first)
    if wanted and path.suffix.lower() not in wanted:
        raise EdgesegError(f"--backend {backend} runs {'/'.join(wanted)} files, not {path.name}")
    return path


def _default_artifact(root: Path, backend: str | None, *, use_workspace: bool) -> Path:
    from edgeseg.defaults import default_model_path

    kind = {None: "onnx", "onnxruntime": "onnx", "openvino": "onnx", "torch": "pt"}.get(backend)
    newest = newest_export(root) if use_workspace and kind == "onnx" else None
    if newest is not None:
        return newest
    try:
        if kind is not None:
            return default_model_path(kind)
    except (ImportError, EdgesegError):
        pass
    if kind != "onnx":  # engines are built per device, checkpoints are yours: none is picked for you
        raise EdgesegError(f"--backend {backend} has no default model; pass --model FILE or a model NAME")
    raise EdgesegError(
        f"no model to run: no shipped default model and {root} has no export; "
        "pass --model FILE or run `edgeseg export MODEL` first"
    )


def _named_artifact(root: Path, spec: str, backend: str | None, checkpoint_first: bool) -> Path:
    from edgeseg.artifacts import BACKEND_SUFFIXES, ENGINE_SUFFIXES

    name = spec.split(".", 1)[0]
    checkpoint = newest_checkpoint(root, name) if "." not in spec and backend in (None, "torch") else None
    if checkpoint is not None and checkpoint_first:
        return checkpoint
    folder = export_dir(root, name)
    suffixes = BACKEND_SUFFIXES[backend] if backend else (".onnx", *ENGINE_SUFFIXES)
    if folder.is_dir():
        for suffix in suffixes:
            candidate = folder / f"{spec}{suffix}"
            if candidate.is_file():
                return candidate
        if "." not in spec and backend == "tensorrt":
            engines = sorted(folder.glob(f"{name}*.engine"), key=lambda p: p.stat().st_mtime)
            if engines:
                return engines[-1]
    if checkpoint is not None:  # trained, not exported: the PyTorch reference
        return checkpoint
    raise EdgesegError(
        f"no file {spec!r} and no export or training run named {spec!r} in {root}; "
        f"pass a .onnx/.engine/.pt path or run `edgeseg export {name}` first"
    )


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
