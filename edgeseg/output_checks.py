"""Checking output paths before any work starts, so a typo costs a second, not an hour of streaming:
`check_writable` (a missing or read-only folder, a FIFO nobody reads, a symlink loop, a name too
long, a full disk) and `check_apart` (no output is, replaces or holds an input, or another output).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Container, Iterable
from pathlib import Path
from typing import Union

from edgeseg.atomic import check_name, destination, disk_full
from edgeseg.errors import EdgesegError, OutputFailed, output_failed
from edgeseg.patient_io import hold_fifo


def check_writable(path: str | os.PathLike[str], option: str, *, folder: bool = False) -> None:
    """Fail now, in one line, if `option`'s `path` could not be written later (a typo, a read-only or
    missing mount, a path under /proc), instead of after an hour of streaming. Creates nothing: the
    nearest existing folder is probed with a temporary file that is removed at once."""
    p = Path(path)
    where = f"{option} {path}"
    if folder:
        check_name(Path(os.path.abspath(p)), Path(where))
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
    open for the write to come (`hold_fifo`)."""
    try:
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            return
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OutputFailed(f"cannot write {where}: it is a FIFO that nobody reads") from None
        raise output_failed(where, exc) from None
    os.set_blocking(fd, True)
    hold_fifo(path, fd)


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
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"the folder {folder} is not writable (permission denied)"
    if exc.errno == errno.EROFS:
        return f"the folder {folder} is on a read-only file system"
    if exc.errno == errno.ENOSPC:
        return f"no space left on device ({folder})"
    if exc.errno == errno.ENOENT and folder.is_dir():
        return f"the folder {folder} is not writable (it accepts no new files)"
    return f"{exc.strerror or exc} ({folder})"


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
