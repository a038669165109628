"""Option definitions shared between commands (edgeseg/cli/options.py, as Polygraphy's argument
groups), and `edgeseg build` as options -> BuildOptions -> build -> report (edgeseg/cli/build_options.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgeseg.cli import app

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "edgeseg" / "cli"
runner = CliRunner()

# flag -> the commands that take it; each is defined once, in options.py
SHARED = {
    "--json": ["eval", "export", "build", "run", "bench", "demo", "ros2"],
    "--card": ["eval", "build", "run", "bench", "ros2"],
    "--workdir": ["eval", "export", "build", "run", "bench", "ros2"],
    "--providers": ["eval", "run", "bench", "ros2"],
    "--backend": ["eval", "run", "ros2"],
    "--device": ["eval", "run", "ros2"],
    "--allow-other-gpu": ["eval", "run", "ros2", "bench"],
    "--threads": [
        "eval",
        "run",
        "ros2",
    ],  # the threads a model runs on (bench: per artifact, 2)  # every command that runs engines
    "--alpha": ["run", "ros2"],
    "--report": ["run", "ros2"],
    "--calib-images": ["build", "demo"],
    "--eval-images": ["build", "demo"],
    "--max-miou-drop": ["build", "demo"],
    "--classes": ["export", "card"],
    "--model": ["run", "ros2"],
    "--input-size": ["run", "eval"],
    "--native-size": ["run", "eval"],
}


def _declared_flags(path: Path) -> set[str]:
    """The flags `typer.Option(...)` calls in `path` declare."""
    flags = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Option":
            flags.update(
                a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")
            )
    return flags


# other options under a shared option's name: the training device (default auto), the model name
# written in a card, the size a card states (export --dynamic-hw, card) rather than the size a run asks for
SAME_NAME_OTHER_MEANING = {
    "--device": ["train.py"],
    "--model": ["card.py"],
    "--input-size": ["card.py", "export_options.py"],
    "--threads": ["train.py", "build_options.py"],  # torch's threads; the INT8 gate's ONNX Runtime threads
}


def test_shared_options_are_declared_only_in_options_py():
    where = {
        flag: [p.name for p in sorted(CLI.glob("*.py")) if flag in _declared_flags(p)] for flag in SHARED
    }
    for flag, modules in SAME_NAME_OTHER_MEANING.items():
        where[flag] = [m for m in where[flag] if m not in modules]
    assert where == {flag: ["options.py"] for flag in SHARED}


def _params(command: str) -> dict[str, object]:
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {opt: p for p in cmd.params for opt in p.opts}


def test_bench_and_demo_take_threads_per_backend_the_same_way():
    """`--threads` of bench and demo is its own shared definition: each artifact measured with 2."""
    seen = {c: _params(c)["--threads"] for c in ("bench", "demo")}
    assert {(p.default, p.min, p.help) for p in seen.values()} == {(2, 1, "CPU threads per backend.")}


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_every_command_takes_a_shared_option_the_same_way(flag):
    """Same default, type, range and (but for --json's noun) help wherever the option appears."""
    seen = {}
    for command in SHARED[flag]:
        p = _params(command)[flag]
        seen[command] = (
            repr(p.default),
            p.min,
            p.max,
            p.is_flag,
            str(p.show_default),
            None if flag == "--json" else p.help,
        )
    assert len(set(seen.values())) == 1, seen


def test_build_reads_its_shared_gate_options_like_demo():
    """The gate's options have one range: a count below 1 or a negative drop is refused by Typer for
    both commands, in one line, exit 2, before any work."""
    for command in ("build", "demo"):
        for args in (["--calib-images", "0"], ["--eval-images", "0"], ["--max-miou-drop", "-1"]):
            r = runner.invoke(app, [command, *args])
            assert r.exit_code == 2, (command, args, r.output)
            assert "Traceback" not in r.output and args[0] in r.output


def test_thin_commands_stay_under_100_lines():
    """`run` and `build` are options -> an options object -> the library -> printing; `export` and
    `card` print through helpers too."""
    commands = {"run.py": "run_command", "build.py": "build_command", "export.py": "export_command",
                "card.py": "card_command"}  # fmt: skip
    for module, name in commands.items():
        tree = ast.parse((CLI / module).read_text())
        (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
        assert fn.end_lineno - fn.lineno + 1 <= 100, (module, fn.end_lineno - fn.lineno + 1)


def test_build_options_reach_buildoptions_and_engineoptions(tiny_onnx, monkeypatch):
    """Every build option arrives in the frozen BuildOptions (TensorRT's in its EngineOptions) that
    `edgeseg.build.build` gets."""
    import edgeseg.build
    from edgeseg.artifacts import read_card
    from edgeseg.build import BuildResult

    model = tiny_onnx(name="tiny")
    got = {}

    def capture(path, opts, progress=None):
        got["path"], got["opts"] = path, opts
        return BuildResult(model=path, card=read_card(path))

    monkeypatch.setattr(edgeseg.build, "build", capture)
    r = runner.invoke(
        app,
        [
            "build", str(model), "--target", "tensorrt", "--fp16", "--calib-images", "5", "--calib-seed", "3",
            "--eval-images", "7", "--max-miou-drop", "0.5", "--threads", "2", "--workspace", "512",
            "--dla-core", "0", "--min-shape", "1x3x32x48", "--opt-shape", "1x3x32x48", "--max-shape", "2x3x32x48",
            "--builder-optimization-level", "4", "--workers", "2", "--version-compatible",
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    opts = got["opts"]
    assert got["path"] == model
    assert (opts.target, opts.fp16, opts.int8) == ("tensorrt", True, False)
    assert (opts.calib_images, opts.calib_seed, opts.eval_images) == (5, 3, 7)
    assert (opts.max_miou_drop, opts.threads, opts.forms) == (0.5, 2, ("cpu", "qdq"))
    e = opts.engine
    assert (e.precision, e.workspace_mib, e.dla_core, e.optimization_level, e.workers) == (
        "fp16",
        512,
        0,
        4,
        2,
    )
    assert (e.min_shape, e.max_shape, e.version_compatible) == ((1, 3, 32, 48), (2, 3, 32, 48), True)

    r = runner.invoke(app, ["build", str(model), "--int8", "--int8-forms", " cpu , "])
    assert r.exit_code == 0, r.output
    assert got["opts"].forms == ("cpu",) and got["opts"].engine is None  # onnxruntime: no engine options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--int8", "--int8-forms", "fast"], "unknown INT8 form"),
        (["--target", "tensorrt", "--min-shape", "1x3"], "shape"),
        (["--fp16", "--calib-method", "median"], "unknown calibration method"),
    ],
)
def test_build_option_mistakes_fail_before_the_workspace_is_looked_at(_isolated_workdir, args, message):
    """No export exists: an option mistake still says what is wrong with the option, not "no export"."""
    r = runner.invoke(app, ["build", *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert "export" not in r.output.split("error:")[1].split("\n")[0].replace("--", "")
