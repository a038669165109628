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
line, and the temporary file is gone. `check_writable` finds most of these before any work starts.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import select
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union

from edgeseg.errors import EdgesegError, OutputFailed
from edgeseg.signals import exit_code_for, stop_requested

MIN_FREE_BYTES = 1 << 16  # below this a filesystem counts as full
_FD_PATH = re.compile(r"^/proc/(\d+)/fd/(\d+)$")
_STD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_FIFO_FDS: dict[str, int] = {}  # FIFOs checked for a reader, still open for writing (see _check_fifo_reader)


def output_failed(target: str | os.PathLike[str], exc: OSError) -> OutputFailed:
    """One line for a failed write: which file, and the system's reason (e.g. no space left). A write
    given up on because a stop signal came (`ReaderStopped`) exits with that signal's code."""
    return OutputFailed(
        f"cannot write {target}: {exc.strerror or exc}", exit_code=getattr(exc, "exit_code", None)
    )


class ReaderStopped(OSError):
    """A FIFO's or pipe's reader took nothing for STALL_GRACE_S after a stop signal arrived."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(errno.EPIPE, f"its reader stopped reading, and {why} asked to stop", name)
        self.exit_code = exit_code_for(why)


STALL_GRACE_S = 2.0  # after a stop signal, how long a write waits for a reader that takes nothing
_POLL_MS = 100


class _PatientWriter(io.RawIOBase):
    """Writes to a FIFO, pipe, device or inherited descriptor. A reader that stops reading holds the
    writer back, as a pipe should, but never past a stop signal: from then on a write that the reader
    takes nothing of for STALL_GRACE_S fails with `ReaderStopped`. So SIGTERM and Ctrl-C end a run
    within seconds whatever reads its outputs, and no thread is left blocked in a write (holding its
    file's lock) when the process exits. Each write waits for room (poll) and then writes at most
    PIPE_BUF bytes, which a pipe with room takes without blocking (pipe(7)). `drop_when_stalled`
    (standard output and error): once given up, writes are dropped instead of failing, since the
    process is ending on that signal anyway and has nowhere else to say so."""

    def __init__(self, fd: int, name: str, *, drop_when_stalled: bool = False) -> None:
        super().__init__()
        self._fd = fd
        self.name = name
        self._poll = select.poll()
        self._poll.register(fd, select.POLLOUT)
        self._stalled = False
        self._drop = drop_when_stalled

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        since = None
        while not self._stalled and not self._poll.poll(_POLL_MS):
            why = stop_requested()
            if why is None:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since >= STALL_GRACE_S:
                self._stalled = True
        if not self._stalled:
            return os.write(self._fd, memoryview(data)[: select.PIPE_BUF])
        if self._drop:
            return memoryview(data).nbytes
        raise ReaderStopped(self.name, stop_requested() or "a signal")

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


def patient_std_streams() -> None:
    """Make standard output and error on a pipe, FIFO or socket patient writers (`_PatientWriter`):
    a final report printed to `edgeseg run --json | reader` whose reader stopped reading cannot hold
    SIGTERM or Ctrl-C up (Python retries an interrupted write forever, PEP 475). For the CLI's entry
    point: it replaces `sys.stdout`/`sys.stderr`, which rich's consoles look up at every print."""
    for name, what in (("stdout", "standard output"), ("stderr", "standard error")):
        stream = getattr(sys, name)
        try:
            fd = stream.fileno()
            mode = os.fstat(fd).st_mode
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            continue
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            continue  # a file, a terminal or /dev/null never stops taking what is written
        stream.flush()
        raw = _PatientWriter(os.dup(fd), what, drop_when_stalled=True)
        patient = io.TextIOWrapper(
            io.BufferedWriter(raw),
            encoding=stream.encoding,
            errors=stream.errors,
            line_buffering=stream.line_buffering,
        )
        setattr(sys, name, patient)


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
        a reader that stops reading cannot hold a stop signal up (`_PatientWriter`). Text reaches its
        reader (a FIFO, the journal) line by line."""
        if self.fd is not None:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()  # what was printed before comes first
            fd = os.dup(self.fd)
        else:
            held = _FIFO_FDS.pop(str(self.real), None)  # opened when checked: the reader saw no EOF since
            fd = held if held is not None else _open_in_place(self.real, self.target)
        binary = io.BufferedWriter(_PatientWriter(fd, str(self.target)))
        if "b" in mode:
            return binary
        return io.TextIOWrapper(binary, encoding="utf-8", line_buffering=True)


def _open_in_place(real: Path, target: Path) -> int:
    """A descriptor appending to the FIFO or device `real`. A FIFO's reader is waited for, as a
    blocking open would (fifo(7)), but only until a stop signal arrives."""
    try:
        fifo = stat.S_ISFIFO(os.stat(real).st_mode)
    except OSError as exc:
        raise output_failed(target, exc) from None
    while True:
        try:
            fd = os.open(real, os.O_WRONLY | os.O_APPEND | (os.O_NONBLOCK if fifo else 0))
            break
        except OSError as exc:
            why = stop_requested()
            if exc.errno != errno.ENXIO:
                raise output_failed(target, exc) from None
            if why is not None:
                raise OutputFailed(
                    f"cannot write {target}: it is a FIFO that nobody reads, and {why} asked to stop",
                    exit_code=exit_code_for(why),
                ) from None
            time.sleep(_POLL_MS / 1000)
    if fifo:
        os.set_blocking(fd, True)
    return fd


def destination(target: str | os.PathLike[str]) -> Destination:
    """Follow `target`'s symlinks: descriptor paths (`/dev/stdout` -> /proc/self/fd/1) are written
    through the descriptor, other non-regular files in place, regular and new files replaced."""
    given = Path(target)
    path = Path(os.path.abspath(given))
    _check_name(path, given)
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


def _check_name(path: Path, given: Path) -> None:
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


def _staging_stem(stem: str) -> str:
    """The target's stem cut so the hidden staging name (`.<stem>.<owner>-<pid>-<random>.partial`)
    fits wherever the target's own name fits."""
    return stem if len(os.fsencode(stem)) <= 160 else os.fsencode(stem)[:160].decode(errors="ignore")


# --- staging names say whose they are, so a killed writer's leftovers can be told from a live one's
def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _owner() -> tuple[str, str]:
    """(where, boot): this machine and pid namespace (a container has its own: its pids mean nothing
    here), and this boot of it. A shared folder (NFS, a container volume) may hold other owners'."""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    import socket

    return _digest(f"{socket.gethostname()}/{namespace}"), _digest(_read("/proc/sys/kernel/random/boot_id"))


def staging_prefix(stem: str) -> str:
    """The start of a hidden staging name for `stem` (`tempfile.mkstemp/mkdtemp(prefix=...)`, with the
    suffix `.partial...`): it carries this process's machine, boot and pid (`remove_stale_staging`)."""
    where, boot = _owner()
    return f".{_staging_stem(stem)}.{where}{boot}-{os.getpid()}-"


_STAGING = re.compile(
    r"^\.(?P<stem>.*)\.(?P<where>[0-9a-f]{8})(?P<boot>[0-9a-f]{8})-(?P<pid>\d+)-[^.]*\.partial"
)


def remove_stale_staging(folder: str | os.PathLike[str], stem: str) -> list[Path]:
    """Remove from `folder` the staging files and folders for `stem` that a writer killed outright
    (SIGKILL, the OOM killer, a power cut) left behind; return them. Stale means written on this
    machine and pid namespace, by a process that is gone: by one of an earlier boot, or by a pid that
    no longer exists (os.kill(pid, 0), kill(2)). A pid in use again by another process is left, as is
    whatever another machine or container wrote: those can be told apart only there."""
    here, boot = _owner()
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match is None or match["stem"] != _staging_stem(stem) or match["where"] != here:
            continue
        if match["boot"] == boot and _alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
        removed.append(path)
    return removed


def clear_stale_staging(target: str | os.PathLike[str]) -> list[Path]:
    """`remove_stale_staging` for the folder `target` as `staged_folder` stages it: beside it (a new
    folder) and inside it (an existing one), so a killed writer's leftovers never make an earlier
    dataset look like the user's own files."""
    final = Path(os.path.realpath(os.path.abspath(target)))
    removed = remove_stale_staging(final.parent, final.name)
    if final.is_dir():
        removed += remove_stale_staging(final, "edgeseg")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # EPERM: it exists, as another user's process
    return True


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
            prefix = staging_prefix(stem) if folder is not None else f".{_staging_stem(stem)}."
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
    _check_name(final, Path(target))
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


def check_writable(path: str | os.PathLike[str], option: str, *, folder: bool = False) -> None:
    """Fail now, in one line, if `option`'s `path` could not be written later (a typo, a read-only or
    missing mount, a path under /proc), instead of after an hour of streaming. Creates nothing: the
    nearest existing folder is probed with a temporary file that is removed at once."""
    p = Path(path)
    where = f"{option} {path}"
    if folder:
        _check_name(Path(os.path.abspath(p)), Path(where))
        real = Path(os.path.realpath(p))
        if real.exists() and not real.is_dir():
            raise OutputFailed(f"cannot write {where}: it is a file, not a folder")
        _probe(_existing_ancestor(real, where), where)
        return
    try:
        dest = destination(p)
    except OutputFailed as exc:  # a folder, a symlink loop, a name too long: say which option
        raise OutputFailed(str(exc).replace(f"cannot write {p}", f"cannot write {where}", 1)) from None
    if dest.fd is not None:
        return
    if not dest.replace:  # a FIFO or device: opening a FIFO would block until a reader comes
        if not os.access(dest.real, os.W_OK):
            raise OutputFailed(f"cannot write {where}: permission denied")
        _check_fifo_reader(dest.real, where)
        return
    _probe(_existing_ancestor(dest.real.parent, where), where)


def _check_fifo_reader(path: Path, where: str) -> None:
    """A FIFO with no reader would block the first write forever (and Ctrl-C with it): refuse it now.
    A non-blocking open for writing fails with ENXIO exactly then (fifo(7)). The descriptor stays
    open for the write to come (`_FIFO_FDS`): closing it would hand the reader an end of file."""
    try:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputFailed(f"cannot write {where}: it is a FIFO that nobody reads") from None
        raise output_failed(where, exc) from None
    os.set_blocking(fd, True)
    old = _FIFO_FDS.pop(str(path), None)
    if old is not None:
        os.close(old)
    _FIFO_FDS[str(path)] = fd


def _existing_ancestor(path: Path, where: str) -> Path:
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputFailed(f"cannot write {where}: {folder} is a file, not a folder")
            return folder
    return Path("/")


def _probe(folder: Path, where: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".edgeseg-probe-", dir=folder)
    except OSError as exc:
        raise OutputFailed(f"cannot write {where}: {_unwritable(folder, exc)}") from None
    os.close(fd)
    os.unlink(tmp)
    if disk_full(folder):  # an empty file still fits on a full disk; its content would not
        raise OutputFailed(f"cannot write {where}: no space left on device ({folder})")


def _unwritable(folder: Path, exc: OSError) -> str:
    """Why a file cannot be made in the existing `folder`, in the user's terms: the OS's own words can
    mislead (/proc answers a new file with ENOENT, "No such file or directory", though it exists)."""
    import errno

    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"the folder {folder} is not writable (permission denied)"
    if exc.errno == errno.EROFS:
        return f"the folder {folder} is on a read-only file system"
    if exc.errno == errno.ENOSPC:
        return f"no space left on device ({folder})"
    if exc.errno == errno.ENOENT and folder.is_dir():
        return f"the folder {folder} is not writable (it accepts no new files)"
    return f"{exc.strerror or exc} ({folder})"


def disk_full(folder: str | os.PathLike[str]) -> bool:
    """Whether the filesystem holding `folder` has (almost) no room left: writes there fail or are
    about to (OpenCV's video writer does not even report it)."""
    try:
        return shutil.disk_usage(folder).free < MIN_FREE_BYTES
    except OSError:
        return False


def _is_within(path: Path, root: Path) -> bool:
    """Path.is_relative_to (3.9+), for Python 3.8."""
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


PathArg = Union[str, "os.PathLike[str]", None]  # (typing's form: this runs on Python 3.8)
_GLOB = re.compile(r"[*?\[]")


def check_apart(
    outputs: Iterable[tuple[str, PathArg]],
    inputs: Iterable[tuple[str, PathArg]],
    *,
    folders: Container[str] = (),
    inside: Container[str] = (),
    remedy: str = "choose another folder",
) -> None:
    """No output may destroy an input, or another output: raise (exit 2, one line) before any work
    when an output is the same file as an input or as another output (symlinks and hard links
    followed), when an output folder (`folders`: the options whose path is a folder written into) is
    or holds an input, or when an output would replace a file inside an input folder. The outputs of
    `inside` never land in an input folder at all (a dataset reads every file there: a plot written
    among its masks becomes a mask). Inputs that do not exist (synth:N, a URL) are skipped; a glob
    input counts as the folder it searches. `remedy` ends the message about a folder output."""
    ins = [(option, name, p) for option, name in inputs if name is not None for p in [_input_path(name)] if p]
    _check_outputs_apart([(o, g) for o, g in outputs if g is not None and o not in folders])
    for out_option, given in outputs:
        if given is None:
            continue
        real = Path(os.path.realpath(os.path.abspath(given)))
        for in_option, name, inp in ins:
            where = f"{out_option} {given} and {in_option} {name}"
            if out_option in folders:
                if real == inp or _is_within(inp, real) or _hard_link_in(inp, real):
                    raise EdgesegError(
                        f"{out_option} {given} holds the input {in_option} {name}: outputs written "
                        f"there could replace it; {remedy}"
                    )
            elif real == inp or _same_file(real, inp):
                raise EdgesegError(
                    f"{where} are the same file: writing would destroy the input; choose another path"
                )
            elif inp.is_dir() and _is_within(real, inp) and real.exists():
                raise EdgesegError(
                    f"{out_option} {given} would replace a file inside the input {in_option} {name}; "
                    "choose another path"
                )
            elif out_option in inside and inp.is_dir() and _is_within(real, inp):
                raise EdgesegError(
                    f"{out_option} {given} is inside the input {in_option} {name}: what is written "
                    "there would mix into it; choose a path outside it"
                )


def _check_outputs_apart(outputs: list[tuple[str, PathArg]]) -> None:
    """Two outputs of one command that are one file: the later would silently replace the earlier.
    A FIFO, device or /dev/stdout is written in place, so two outputs may share it."""
    seen: list[tuple[str, PathArg, Path]] = []
    for option, given in outputs:
        real = Path(os.path.realpath(os.path.abspath(given)))  # type: ignore[arg-type]
        if real.exists() and not real.is_file():
            continue
        for other, other_given, other_real in seen:
            if real == other_real or _same_file(real, other_real):
                raise EdgesegError(
                    f"{other} {other_given} and {option} {given} are the same file: one output would "
                    "replace the other; choose another path"
                )
        seen.append((option, given, real))


def _input_path(given: str | os.PathLike[str]) -> Path | None:
    """An input's real path (a glob's searched folder), or None when it is not on disk."""
    text = os.fspath(given)
    if _GLOB.search(text):
        text = os.path.dirname(_GLOB.split(text, 1)[0]) or "."
    path = Path(os.path.realpath(os.path.abspath(text)))
    return path if os.path.lexists(path) else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _hard_link_in(inp: Path, folder: Path) -> bool:
    """Whether a file of `folder` (top level, where outputs land) is a hard link of the input file."""
    try:
        st = os.stat(inp)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink < 2 or not folder.is_dir():
            return False
        with os.scandir(folder) as entries:
            return any(
                e.inode() == st.st_ino and e.stat().st_dev == st.st_dev for e in entries if e.is_file()
            )
    except OSError:
        return False
