"""A real small filesystem for the tests that fill a disk (root may mount one; CI runs as root)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def tmpfs_at(folder: Path, size: str) -> Iterator[str | None]:
    """Mount a tmpfs of `size` (e.g. "1m") on `folder` for the block and unmount it after. Yields None
    when mounted, else why it could not be (the caller skips or takes another route)."""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        yield done.stderr.decode().strip() or "mount failed"
        return
    try:
        yield None
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
