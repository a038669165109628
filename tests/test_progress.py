"""The CLI's progress drawing (edgeseg/cli/progress.py) accepts every call the `Progress` protocol
allows, in a terminal (rich bars) and off one (plain lines): library code passes an optional detail
(the trainer's loss and learning rate), and a drawer that refused it would crash the command."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import edgeseg.console
from edgeseg.cli.progress import progress_bars


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_takes_the_optional_detail_in_and_off_a_terminal(monkeypatch, terminal):
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120)
    monkeypatch.setattr(edgeseg.console, "err_console", console)
    with progress_bars() as report:
        report("epoch 1/2", 1, 4)
        report("epoch 1/2", 4, 4, "loss 0.4123 lr 1.0e-03")
        report("scenes", 3, 0)  # unknown total
    text = out.getvalue()
    assert "loss 0.4123 lr 1.0e-03" in text
    if terminal:
        assert "\x1b[" in text  # drawn as a live bar, not as plain lines
    else:
        assert "epoch 1/2 4/4  loss 0.4123 lr 1.0e-03" in text.splitlines()


def test_disabled_progress_draws_nothing(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(edgeseg.console, "err_console", Console(file=out, force_terminal=True))
    with progress_bars(enabled=False) as report:
        report("x", 1, 2, "detail")
    assert out.getvalue() == ""
