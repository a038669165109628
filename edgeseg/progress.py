"""How library code reports progress: a callback, never a drawn bar (only the CLI draws; see
edgeseg/cli/progress.py), so the same functions serve a terminal, a log file and a robot's process.

    def work(progress: Progress | None = None) -> None:
        for i in range(n):
            ...
            if progress:
                progress("calibrating", i + 1, n)            # what, done, total (0: unknown)
                progress("epoch 2/8", i + 1, n, "loss 0.41")  # optional detail beside the count
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, what: str, done: int, total: int, detail: str = "", /) -> None: ...
