"""Staging names that say whose they are: a hidden `.<stem>.<owner>-<pid>-<random>.partial` file or
folder carries the machine, boot and pid of its writer, so what a writer killed outright (SIGKILL,
the OOM killer, a power cut) left behind can be told from a live writer's and removed by the next.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path


def staging_stem(stem: str) -> str:
    """The target's stem cut so the hidden staging name (`.<stem>.<owner>-<pid>-<random>.partial`)
    fits wherever the target's own name fits."""
    return stem if len(os.fsencode(stem)) <= 160 else os.fsencode(stem)[:160].decode(errors="ignore")


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
    return f".{staging_stem(stem)}.{where}{boot}-{os.getpid()}-"


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
        if match is None or match["stem"] != staging_stem(stem) or match["where"] != here:
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
