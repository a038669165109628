"""Atomic file writes: artifacts are complete or absent, never half-written.

A crash or Ctrl-C during export, build or training leaves the previous file (or nothing) in place,
because we write to a temporary sibling and `os.replace` it over the target. Only regular files are
ever replaced:

- a symlink is followed, and the file it names is replaced (the link stays);
- a target that is not a regular file (a FIFO, a device, `/dev/stdout` or `/proc/self/fd/N`) is
  written in place: standard output gets the bytes on this process's own descriptor, and nothing in
  /dev is ever replaced (as root that would break the machine);
- new files get the mode the user's umask gives, as `open()` would (`mkstemp` alone makes 0600), and
  a replaced file keeps its mode.

A failed write (disk full, read-only or unwritable folder, a path under /proc) is one `OutputFailed`
line, and the temporary file is gone. `edgeseg.output_checks` finds most of these before any work starts.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edgeseg.errors import OutputFailed, output_failed
from edgeseg.patient_io import PatientWriter, open_for_appending, take_held_fifo
from edgeseg.staging import clear_stale_staging, remove_stale_staging, staging_prefix, staging_stem

MIN_FREE_BYTES = 1 << 16  # below this a filesystem counts as full
_FD_PATH = re.compile(r"^/proc/(\d+)/fd/(\d+)$")
_STD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@dataclass(frozen=True)
class Destination:
    """Where a write to `target` lands: `real` (symlinks followed), replaced atomically when it is a
    regular or new file, else written in place (`fd`: one of this process's open descriptors)."""

    target: Path
    real: Path
    replace: bool
    fd: int | None = None

    def open_in_place(self, mode: str) -> IO[Any]:
        """Append to a FIFO, device or descriptor, never truncating (`/dev/stdout` may be a log file);
        a reader that stops reading cannot hold a stop signal up (`PatientWriter`). Text reaches its
        reader (a FIFO, the journal) line by line."""
        if self.fd is not None:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()  # what was printed before comes first
            fd = os.dup(self.fd)
        else:
            held = take_held_fifo(self.real)  # opened when checked: the reader saw no EOF since
            fd = held if held is not None else open_for_appending(self.real, self.target)
        binary = io.BufferedWriter(PatientWriter(fd, str(self.target)))
        if "b" in mode:
            return binary
        return io.TextIOWrapper(binary, encoding="utf-8", line_buffering=True)


def destination(target: str | os.PathLike[str]) -> Destination:
    """Follow `target`'s symlinks: descriptor paths (`/dev/stdout` -> /proc/self/fd/1) are written
    through the descriptor, other non-regular files in place, regular and new files replaced."""
    given = Path(target)
    path = Path(os.path.abspath(given))
    check_name(path, given)
    for _ in range(40):  # the kernel's own limit on a symlink chain
        if str(path) in _STD_STREAMS:
            return Destination(given, path, replace=False, fd=_STD_STREAMS[str(path)])
        path = Path(os.path.realpath(path.parent)) / path.name  # /dev/fd, /proc/self -> /proc/<pid>
        match = _FD_PATH.match(str(path))
        if match:  # a descriptor's magic link: never follow it to the file behind it
            own = int(match.group(1)) == os.getpid()
            return Destination(given, path, replace=False, fd=int(match.group(2)) if own else None)
        if not path.is_symlink():
            break
        path = Path(os.path.normpath(path.parent / os.readlink(path)))
    else:
        raise OutputFailed(f"cannot write {given}: too many levels of symbolic links (a symlink loop)")
    real = Path(os.path.realpath(path))
    if real.is_dir():
        raise OutputFailed(f"cannot write {given}: it is a folder")
    exists = real.exists()
    return Destination(given, real, replace=not exists or real.is_file())


def check_name(path: Path, given: Path) -> None:
    """A name longer than the filesystem allows (255 bytes on ext4, tmpfs, xfs) can never be a file,
    and every later look at it fails with ENAMETOOLONG: say so first."""
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest <= 255 and len(os.fsencode(str(path))) < 4096:
        return
    limit = 255
    with contextlib.suppress(OSError, ValueError):
        limit = os.pathconf(next((f for f in path.parents if _is_dir(f)), Path("/")), "PC_NAME_MAX")
    if longest > limit:
        raise OutputFailed(
            f"cannot write {given}: file name too long ({longest} bytes; the limit is {limit})"
        )
    if len(os.fsencode(str(path))) >= 4096:
        raise OutputFailed(f"cannot write {given}: path too long (the limit is 4096 bytes)")


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


class PendingFile:
    """A file on its way to `target`: write it at `path` (a hidden temporary sibling; a private
    temporary file when the target is written in place), then `commit()` puts it in place or
    `discard()` drops it. `suffix` keeps the extension (OpenCV picks the container from it).
    Every writer stages in a file of its own (`.<stem>.<owner>-<pid>-<random>.partial<suffix>`): two
    runs writing the same --log or --save never write into one file, and the last to finish replaces
    it whole; one killed outright leaves its file, which the next writer of the target removes
    (`remove_stale_staging`)."""

    def __init__(self, target: str | os.PathLike[str], *, suffix: str = "") -> None:
        self.dest = destination(target)
        real = self.dest.real
        folder: Path | None = real.parent if self.dest.replace else None
        stem = real.stem if suffix else real.name
        try:
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
                remove_stale_staging(folder, stem)
            prefix = staging_prefix(stem) if folder is not None else f".{staging_stem(stem)}."
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=f".partial{suffix}", dir=folder)
        except OSError as exc:
            raise output_failed(target, exc) from None
        os.close(fd)
        self.path = Path(tmp)
        self.done = False

    def commit(self) -> None:
        """Put the finished file in place (atomically for regular files); raises OutputFailed."""
        if self.done:
            return
        self.done = True
        dest = self.dest
        try:
            if dest.replace:
                os.chmod(self.path, _mode_for(dest.real))
                with open(self.path, "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(self.path, dest.real)
            else:
                with open(self.path, "rb") as src, dest.open_in_place("wb") as out:
                    shutil.copyfileobj(src, out)
        except OSError as exc:
            raise output_failed(dest.target, exc) from None
        finally:
            self._remove()

    def discard(self) -> None:
        self.done = True
        self._remove()

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


def _mode_for(real: Path) -> int:
    """A replaced file keeps its mode; a new one gets what the umask allows, as with open()."""
    try:
        return stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        return 0o666 & ~umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path; when the block succeeds it becomes `target` (see the module doc).

    Use when a library (onnx.save, torch.save, cv2) wants a path rather than a file object.
    """
    pending = PendingFile(target, suffix=suffix)
    try:
        yield pending.path
    except OSError as exc:
        pending.discard()
        raise output_failed(target, exc) from None
    except Exception:
        full = disk_full(pending.path.parent)  # torch and others wrap ENOSPC in their own errors
        pending.discard()
        if full:
            raise OutputFailed(f"cannot write {target}: no space left on device") from None
        raise
    except BaseException:
        pending.discard()
        raise
    pending.commit()


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """A file object whose content becomes `target` when the block succeeds; a FIFO, device or
    `/dev/stdout` target is written in place as the block writes."""
    if "w" not in mode:
        raise ValueError("atomic_open is for writing")
    dest = destination(target)
    try:
        if not dest.replace:
            with dest.open_in_place(mode) as fh:
                yield fh
            return
        with atomic_path(target) as tmp, open(tmp, mode) as fh:
            yield fh
    except OSError as exc:
        raise output_failed(target, exc) from None


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str], *, together: Iterable[PendingFile] = ()) -> Iterator[Path]:
    """Yield a hidden staging folder to fill; when the block succeeds its content becomes `target`'s,
    so `target` never holds half of what was written: Ctrl-C, SIGTERM or a full disk leave it as it
    was and the staging folder gone. A new `target` is staged beside it (`.<name>.<random>.partial`)
    and appears in one rename; an existing folder (symlinks followed; perhaps a mount point, which
    cannot be renamed) is staged inside itself and its entries are swapped for the new ones in a few
    renames while SIGINT/SIGTERM are held. The caller decides whether an existing `target` may be
    replaced. `together`: files committed in the same breath (a video beside its masks folder), or
    discarded. Errors name the file under `target`, not its staging twin."""
    from edgeseg.signals import held

    final = Path(os.path.realpath(os.path.abspath(target)))
    check_name(final, Path(target))
    inside = final.is_dir()
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        home = final if inside else final.parent
        stem = "edgeseg" if inside else final.name
        clear_stale_staging(final)
        stage = Path(tempfile.mkdtemp(prefix=staging_prefix(stem), suffix=".partial", dir=home))
    except OSError as exc:
        raise output_failed(target, exc) from None
    try:
        os.chmod(stage, 0o777 & ~umask())  # mkdtemp makes 0700; a folder gets what mkdir would give
        yield stage
        with held():
            if inside:
                _swap_entries(stage, final)
            else:
                os.rename(stage, final)
            for pending in together:
                pending.commit()
    except OutputFailed as exc:
        raise OutputFailed(str(exc).replace(str(stage), str(target))) from None
    except OSError as exc:
        raise output_failed(str(exc.filename or target).replace(str(stage), str(target)), exc) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        for pending in together:
            pending.discard()  # a no-op once committed


def _swap_entries(stage: Path, final: Path) -> None:
    """Replace `final`'s entries by `stage`'s (a folder inside it): the old ones are moved into a
    hidden folder and removed after, or moved back if the new ones cannot all be put in place. That
    folder is named as staging is, so what a writer killed mid-swap (SIGKILL) left in it goes with
    the next write's `clear_stale_staging`."""
    old = Path(tempfile.mkdtemp(prefix=staging_prefix("edgeseg"), suffix=".partial", dir=final))
    moved: list[str] = []
    placed: list[str] = []
    try:
        for entry in os.listdir(final):
            if (final / entry) not in (stage, old):
                os.rename(final / entry, old / entry)
                moved.append(entry)
        for entry in os.listdir(stage):
            os.rename(stage / entry, final / entry)
            placed.append(entry)
    except OSError:
        for entry in placed:
            with contextlib.suppress(OSError):
                os.rename(final / entry, stage / entry)
        for entry in moved:
            with contextlib.suppress(OSError):
                os.rename(old / entry, final / entry)
        with contextlib.suppress(OSError):
            os.rmdir(old)  # only when everything went back
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(prefix: str, room_needed: int = 0) -> Iterator[Path]:
    """A private temporary folder (under $TMPDIR) for a library that writes its own files (ONNX
    Runtime's calibrator and quantizer), removed afterwards. Whatever such a library raises when that
    disk fills up (an OSError, a protobuf parse error of its truncated file, our own wrapper of it) is
    one `OutputFailed` naming the folder, exit 6. Some writers (ONNX Runtime's C++ model writer) fail
    silently and free their files before the error surfaces; `room_needed` (about what the library
    writes, in bytes) lets a failure that began with less room than that count as a full disk too."""
    try:
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        room_at_start = shutil.disk_usage(folder).free
    except OSError as exc:
        raise output_failed(tempfile.gettempdir(), exc) from None
    try:
        yield folder
    except OutputFailed:
        raise
    except Exception as exc:
        cause = _no_space_in(exc)
        if cause is not None or disk_full(folder) or room_at_start < room_needed:
            where = cause.filename if cause is not None and cause.filename else folder
            raise OutputFailed(
                f"cannot write {where}: no space left on device (a temporary file: TMPDIR can point "
                "at a roomier disk)"
            ) from None
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _no_space_in(exc: BaseException | None) -> OSError | None:
    """The ENOSPC error behind `exc`, however a library wrapped it (cause or context)."""
    for _ in range(16):
        if exc is None:
            return None
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(target, "wb") as fh:
        fh.write(data)


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    with atomic_open(target, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False)
        fh.write("\n")


def disk_full(folder: str | os.PathLike[str]) -> bool:
    """Whether the filesystem holding `folder` has (almost) no room left: writes there fail or are
    about to (OpenCV's video writer does not even report it)."""
    try:
        return shutil.disk_usage(folder).free < MIN_FREE_BYTES
    except OSError:
        return False
