"""How the CLI draws the progress library functions report (`edgeseg.progress.Progress`: what, done,
total, an optional detail): rich bars in a terminal, a few plain lines elsewhere (CI logs, `| tee`,
`make demo`), where redrawn bars would be dumped as clutter. (`run` and `export` draw their own status
line from the pipeline's stats and the export's steps.)
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from edgeseg.progress import Progress

PLAIN_INTERVAL_S = 10.0  # plain output: a phase's start, its end, and a line at most this often between


@contextlib.contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Progress]:
    """A progress callback for the duration of the block (a no-op when not `enabled`)."""
    from edgeseg.console import err_console

    if not enabled:
        yield _ignore
    elif err_console.is_terminal:
        with _rich_bars(err_console) as report:
            yield report
    else:
        yield _PlainLines(err_console)


def _ignore(what: str, done: int, total: int, detail: str = "") -> None:
    return None


@contextlib.contextmanager
def _rich_bars(console: Any) -> Iterator[Progress]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as bars:
        tasks: dict[str, Any] = {}

        def report(what: str, done: int, total: int, detail: str = "") -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(what, total=total or None, detail="")
            bars.update(tasks[what], completed=done, total=total or None, detail=detail)

        yield report


class Steps:
    """A command's numbered steps (`export`): one rich bar whose text is the current step in a
    terminal; elsewhere a line as each step starts, so a step that takes minutes (tracing a ResNet-50)
    is announced in the log before it runs, not after."""

    def __init__(self, total: int, first: str) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from edgeseg.console import err_console

        self.console = err_console
        self.total = total
        self.done = 0
        self.terminal = err_console.is_terminal
        self.bar = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            console=err_console, transient=True, disable=not self.terminal,
        )  # fmt: skip
        # `first` (loading the input) shows in the terminal only: a bad input stays one error line
        self.task = self.bar.add_task(first, total=total)

    def __call__(self, message: str) -> None:
        self.done += 1
        self.bar.update(self.task, description=message, advance=1)
        if not self.terminal:
            step = f"(step {min(self.done, self.total)}/{self.total})"
            self.console.print(f"{message} {step}", highlight=False, markup=False, soft_wrap=True)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Print something else (a warning) without the bar drawn through it."""
        self.bar.stop()
        try:
            yield
        finally:
            self.bar.start()


@contextlib.contextmanager
def steps(total: int, first: str) -> Iterator[Steps]:
    drawer = Steps(total, first)
    with drawer.bar:
        yield drawer


class _PlainLines:
    """`what: done/total` lines: when a phase starts, when it ends, and now and then in between."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.last: dict[str, float] = {}

    def __call__(self, what: str, done: int, total: int, detail: str = "") -> None:
        now = time.monotonic()
        first = what not in self.last
        finished = total > 0 and done >= total
        if first or finished or now - self.last[what] >= PLAIN_INTERVAL_S:
            self.last[what] = now
            count = f" {done}/{total}" if total else ""
            line = f"{what.strip()}{count}" + (f"  {detail}" if detail else "")
            self.console.print(line, highlight=False, soft_wrap=True, markup=False)
