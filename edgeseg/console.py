"""Shared rich consoles and small output helpers so every command prints the same way."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

LOG_WIDTH = 200  # not a terminal (CI logs, `| tee`, files): wide enough that table cells never wrap


def _width(stream: Any) -> int | None:
    """A terminal keeps its own width; elsewhere rich would assume 80 columns and fold every table."""
    isatty = getattr(stream, "isatty", None)
    if (isatty is not None and isatty()) or os.environ.get("COLUMNS"):
        return None
    return LOG_WIDTH


def reader_closed(stderr: bool = False) -> Exception:
    """Standard output (or error) is a pipe whose reader closed it (`edgeseg run | head -1`): what
    comes later goes to /dev/null, so the interpreter's last flush cannot fail again, and the command
    ends with one line and exit 6, where rich's own handler exited 1 without a word."""
    from edgeseg.errors import OutputFailed

    stream = sys.stderr if stderr else sys.stdout
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return OutputFailed(f"cannot write standard {'error' if stderr else 'output'}: its reader closed it")


class _Console(Console):
    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise reader_closed(self.stderr)


console = _Console(width=_width(sys.stdout))
err_console = _Console(stderr=True, width=_width(sys.stderr))


def print_json(obj: Any) -> None:
    """Machine output: plain JSON on stdout, nothing else."""
    try:
        sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise reader_closed() from None


def new_table(title: str | None = None, **kw: Any) -> Table:
    """An empty rich Table in the project's style: outside a terminal a compact one (no frame)."""
    if not console.is_terminal:
        kw.setdefault("box", box.SIMPLE_HEAD)
        kw.setdefault("pad_edge", False)
    return Table(title=title, **kw)


def table(title: str | None, columns: list[str], rows: list[list[Any]], **kw: Any) -> Table:
    """A results table; outside a terminal a compact one (no frame, one line per row)."""
    t = new_table(title, **kw)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    return t


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:  # NaN
            return "n/a"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def warn(message: str) -> None:
    """One line on stderr, never wrapped (logs and journals keep it whole)."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)
