"""The `edgeseg` command line: a thin Typer app.

Each command lives in its own module in this package and exposes `register(app)`; modules are
discovered at start-up, so a command that is not built yet is simply absent. Command modules import
heavy libraries inside the command function, never at module level, so `edgeseg --help` stays fast
and torch-free.
"""

from __future__ import annotations

import errno
import importlib
import pkgutil
import re
import sys

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from edgeseg._version import __version__
from edgeseg.errors import EXIT_CODE_HELP, EdgesegError, ExitCode

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # what no retry fixes: exit 6, not a traceback

# Typer vendors its own click: its usage errors are the bases of the public typer.BadParameter
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def print_error(message: str) -> None:
    """The one line a failure prints on stderr (never wrapped, so scripts and journals get one line)."""
    from edgeseg.console import err_console

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


class _HelpStyle:
    """How every command's help writes its parameters: on/off flags take no value, so no `<bool>`;
    arguments are MODEL / [MODEL] as the texts name them (Typer writes `{model}` for a required one);
    a default given as a plain value reads `[default: 30]` like Typer's own, and only a description
    keeps Typer's parentheses (`[default: (the newest export)]`)."""

    def get_params(self, ctx):  # type: ignore[no-untyped-def]
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            if param.param_type_name == "argument" and param.metavar is None:
                param.metavar = (param.name or "").upper()
                param._usage_display_name = _usage_name(param)
            shown = getattr(param, "show_default", None)
            if isinstance(shown, str) and _PLAIN_VALUE.fullmatch(shown):
                param._get_default_string = lambda *, _text=shown, **_: _text
        return params


_PLAIN_VALUE = re.compile(r"[\w.+-]+")  # 30, sgd, 1e-4: a value, not a description


def _usage_name(param):  # type: ignore[no-untyped-def]
    """MODEL for a required argument, [MODEL] for an optional one (click's convention)."""
    dots = "..." if param.nargs != 1 else ""
    return lambda: (param.metavar if param.required else f"[{param.metavar}]") + dots


class _Command(_HelpStyle, TyperCommand):
    pass


class _Group(_HelpStyle, TyperGroup):
    """Turns EdgesegError, a mistyped option and Ctrl-C/SIGTERM into one line and the exit code of
    `ExitCode`, instead of a traceback or a multi-line usage box."""

    def invoke(self, ctx):  # type: ignore[override]
        from edgeseg.signals import Terminated

        try:
            return super().invoke(ctx)
        except EdgesegError as exc:
            print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            print_error(f"cannot write {exc.filename or 'a file'}: {exc.strerror}")
            raise typer.Exit(ExitCode.OUTPUT_FAILED) from None
        except _UsageError as exc:  # an unknown option, a value of the wrong type, a missing one
            where = f"`{exc.ctx.command_path} --help`" if exc.ctx is not None else "`edgeseg --help`"
            print_error(f"{exc.format_message()} (see {where})")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            from edgeseg.console import err_console

            terminated = isinstance(exc, Terminated)
            err_console.print("[yellow]terminated[/]" if terminated else "[yellow]interrupted[/]")
            raise typer.Exit(ExitCode.TERMINATED if terminated else ExitCode.INTERRUPTED) from None

    def list_commands(self, ctx) -> list[str]:  # keep the order of registration
        return list(self.commands)


app = typer.Typer(
    name="edgeseg",
    cls=_Group,
    help="Semantic segmentation from PyTorch to the edge: train, export, build (FP16/INT8/TensorRT), run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: " + "; ".join(f"{int(code)} {text}" for code, text in EXIT_CODE_HELP.items()) + ".",
)

# Order in --help follows the pipeline; modules not in this list are appended alphabetically.
_ORDER = ["models", "data", "train", "eval", "export", "build", "run", "bench", "demo"]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"edgeseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """edgeseg: semantic segmentation from PyTorch to the edge."""


def _register_commands() -> None:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)
    for typer_app in [app, *(group.typer_instance for group in app.registered_groups)]:
        for command in typer_app.registered_commands:
            if command.cls in (None, TyperCommand):
                command.cls = _Command
    for group in app.registered_groups:
        group.cls = _Group  # the sub-app's own setting is a placeholder until Typer builds it
    from edgeseg.compat import resolve_typer_app

    resolve_typer_app(app)  # Python 3.8/3.9 (JetPack 5.1's system Python): `X | None` options for Typer


_register_commands()


def main() -> None:
    """Console-script entry point; SIGTERM stops like Ctrl-C (streams and videos get finalised) and
    exits 143 (edgeseg.signals)."""
    from edgeseg.patient_io import patient_std_streams
    from edgeseg.signals import install_sigterm

    install_sigterm()
    patient_std_streams()  # a report to a stopped pipe cannot hold SIGTERM or Ctrl-C up
    try:
        app()
    except EdgesegError as exc:  # raised outside a command (e.g. option callbacks)
        print_error(str(exc))
        sys.exit(exc.exit_code)
