"""The house rules of docs/architecture.md: stage import directions (module level and inside
functions), the packaging list, ruff's first-party view, and source paths the docs cite."""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "edgeseg": "edgeseg",
    "export": "edgeseg.export",
    "calib": "edgeseg.calib",
    "runtime": "edgeseg.runtime",
}
APPS = {"edgeseg.build", "edgeseg.demo", "edgeseg.bench"}
ALLOWED = {
    "core": {"core"},
    "runtime": {"core", "runtime"},
    "evaluate": {"core", "runtime", "evaluate"},
    "export": {"core", "runtime", "export"},
    "calib": {"core", "runtime", "export", "calib"},
    "training": {"core", "runtime", "evaluate", "training"},
    "apps": {"core", "runtime", "evaluate", "export", "calib", "training", "apps"},
    "cli": {"core", "runtime", "evaluate", "export", "calib", "training", "apps", "cli"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    name = FOLDERS[parts[0]].split(".") + parts[1:]
    return ".".join(name[:-1] if name[-1] == "__init__" else name)


def stage(module: str) -> str:
    if module.startswith("edgeseg.cli") or module in ("edgeseg.__main__", "edgeseg.ros2"):
        return "cli"
    for name in ("runtime", "export", "calib", "training"):
        if module == f"edgeseg.{name}" or module.startswith(f"edgeseg.{name}."):
            return name
    if module == "edgeseg.evaluate":
        return "evaluate"
    return "apps" if module in APPS else "core"


def imports_of(path: Path) -> set[str]:
    """Every edgeseg module `path` imports, wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("edgeseg"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from edgeseg import workspace`
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("edgeseg"))
    return found


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def known_modules() -> set[str]:
    return {module_name(p) for p in sources()}


def test_stages_import_only_downward():
    known = known_modules()
    bad = []
    for path in sources():
        here = module_name(path)
        for target in imports_of(path):
            if target not in known:  # a name imported from a module, e.g. edgeseg.card.ModelCard
                continue
            if stage(target) not in ALLOWED[stage(here)]:
                bad.append(f"{path.relative_to(ROOT)}: {stage(here)} imports {stage(target)} ({target})")
    assert not bad, "stage rule broken (docs/architecture.md):\n" + "\n".join(bad)


def test_the_stage_graph_has_no_cycles():
    edges: dict[str, set[str]] = defaultdict(set)
    for source, allowed in ALLOWED.items():
        edges[source] = allowed - {source}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    assert not [s for s in ALLOWED if reaches(s, s, set())]


def module_graph() -> dict[str, set[str]]:
    """edgeseg module -> the edgeseg modules it imports (module level and inside functions alike);
    `from edgeseg.models import weights` is an import of the module edgeseg.models.weights."""
    known = known_modules()
    graph = {}
    for path in sources():
        here = module_name(path)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("edgeseg")
            ):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in known else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("edgeseg"))
        graph[here] = {t for t in targets if t in known and t != here}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a circle (Tarjan's strongly connected
    components with more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles_inside_packages():
    """No module imports itself through others, inside a stage as well as between stages: a cycle
    makes import order matter and hides which module is the lower one (move the shared part below
    both, as edgeseg/models/state_dict.py is below registry, weights and torchvision_seg, and
    runtime/source_base.py below sources.py and bag.py)."""
    cycles = import_cycles(module_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_checker_finds_a_cycle_through_a_function_level_import():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_rule_checker_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from edgeseg.calib.gate import Gate\n    import edgeseg.cli\n")
    assert {"edgeseg.calib.gate", "edgeseg.cli"} <= imports_of(probe)
    assert stage("edgeseg.calib.gate") not in ALLOWED[stage("edgeseg.export.fp16")]


def test_packaging_lists_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # a src layout made of links: src/edgeseg -> edgeseg/, edgeseg/<stage> -> <stage>/ (pyproject.toml)
    assert config["package-dir"] == {"": "src"}
    assert (ROOT / "src" / "edgeseg").resolve() == (ROOT / "edgeseg").resolve()
    for folder in FOLDERS:
        if folder != "edgeseg":
            assert (ROOT / "edgeseg" / folder).resolve() == (ROOT / folder).resolve(), folder
    folders = [ROOT / f for f in FOLDERS] + [
        d for f in FOLDERS for d in (ROOT / f).rglob("*") if d.is_dir() and d.name != "__pycache__"
    ]
    on_disk = {module_name(d / "__init__.py") for d in folders}  # code and data packages (assets) alike
    assert set(config["packages"]) == on_disk


def test_ruff_files_edgeseg_as_first_party_and_the_tree_is_clean():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]["isort"]
    assert "edgeseg" in config["known-first-party"]
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is installed by the test extra")
    for args in (["check", "--quiet"], ["format", "--check", "--quiet"]):
        out = subprocess.run([str(ruff), *args, str(ROOT)], capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stdout + out.stderr


def test_docs_cite_only_paths_that_exist():
    cited = re.compile(r"`((?:edgeseg|export|calib|runtime|benchmarks|tools|tests)/[\w/]+\.py)")
    missing = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for path in cited.findall(doc.read_text()):
            if not (ROOT / path).is_file():
                missing.append(f"{doc.name}: {path}")
    assert not missing, missing


def private_reaches(path: Path, root: Path = ROOT) -> list[str]:
    """Where `path` uses another object's or module's private name: `x._name` where x is not
    `self`, `cls` or `super()`, and `from module import _name`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom):
            found += [
                f"{path.relative_to(root)}:{node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if a.name.startswith("_") and not a.name.startswith("__")
            ]
    return found


def test_runtime_parts_meet_only_through_public_interfaces():
    """The runtime is composed of parts (docs/architecture.md, "The runtime"): a part that reaches into
    another's private fields (a lane into its pipeline's channels, a stage into the stats' lock) ties
    them together where no interface says so."""
    found = [hit for path in sorted((ROOT / "runtime").rglob("*.py")) for hit in private_reaches(path)]
    assert not found, "private names used from outside their object:\n" + "\n".join(found)


def test_no_module_imports_another_modules_private_names():
    """Across the whole package, a `_name` stays in its module: what another module needs is public
    (edgeseg/data/synth_render.py once imported synth_layout's `_Layout`, voc.py base's `_names`)."""
    found = [
        hit
        for path in sources()
        for hit in private_reaches(path)
        if ": from " in hit  # attribute access on library objects (click's parameters) is another matter
    ]
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def probe_hits(checker: Callable[[Path, Path], list[str]], text: str, tmp_path: Path) -> list[str]:
    """What a checker finds in a probe file holding `text`, without the `file:line: ` prefix."""
    probe = tmp_path / "probe.py"
    probe.write_text(text)
    return [hit.split(": ", 1)[1] for hit in checker(probe, tmp_path)]


def test_the_private_access_checker_sees_attributes_and_imports(tmp_path):
    text = (
        "from edgeseg.runtime.pipeline import _END\n"
        "class A:\n"
        "    def f(self, stats):\n"
        "        self._own, super()._parent()\n"
        "        with stats._lock:\n"
        "            return self.pipe._channel, self.__dict__\n"
    )
    assert probe_hits(private_reaches, text, tmp_path) == [
        "from edgeseg.runtime.pipeline import _END",
        "stats._lock",
        "self.pipe._channel",
    ]


REPORT_NAMES = {"report", "result", "reported", "rep"}


def report_keyed(path: Path, root: Path = ROOT) -> list[str]:
    """Where `path` reads or writes a run's report by string key (`report["frames"]`,
    `result["artifact"] = ...`, `x.to_dict()["..."]`) instead of the typed RunReport's fields."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Subscript) or not isinstance(node.slice, ast.Constant):
            continue
        value = node.value
        named = isinstance(value, ast.Name) and value.id in REPORT_NAMES
        dumped = isinstance(value, ast.Call) and getattr(value.func, "attr", None) == "to_dict"
        if named or dumped:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_cli_reads_the_typed_run_report():
    """`edgeseg run` and `edgeseg ros2` print and exit from RunReport's fields (runtime/report.py);
    the JSON form is made once, by `to_dict()`, and nothing edits it by key (issue 22)."""
    cli = ROOT / "edgeseg" / "cli"
    found = [hit for name in ("run.py", "run_streams.py", "ros2.py") for hit in report_keyed(cli / name)]
    assert not found, "read RunReport's fields:\n" + "\n".join(found)


def test_the_report_key_checker_sees_reads_writes_and_dumps(tmp_path):
    text = "x = report['frames']\nresult['artifact'] = 'a'\nr.to_dict()['fps']\nreport.stats.processed\nplan.sources[0]\n"
    hits = probe_hits(report_keyed, text, tmp_path)
    assert hits == ["report['frames']", "result['artifact']", "r.to_dict()['fps']"]


def unfrozen_options(path: Path, root: Path = ROOT) -> list[str]:
    """Options classes in `path` (a dataclass named ...Options, ...Config or ...Params) that are not
    frozen: one validation style is a frozen dataclass checked once in `__post_init__`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ClassDef) or not node.name.endswith(("Options", "Config", "Params")):
            continue
        for deco in node.decorator_list:
            name = deco.func if isinstance(deco, ast.Call) else deco
            if getattr(name, "id", getattr(name, "attr", None)) != "dataclass":
                continue
            frozen = isinstance(deco, ast.Call) and any(
                k.arg == "frozen" and getattr(k.value, "value", False) is True for k in deco.keywords
            )
            if not frozen:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {node.name}")
    return found


def test_options_classes_are_frozen_and_checked_once():
    """docs/architecture.md, "checking options": a variant is made with dataclasses.replace (which
    checks again), never by mutating a checked object (EngineOptions once was, after its check)."""
    found = [hit for path in sources() for hit in unfrozen_options(path)]
    assert not found, "make these @dataclass(frozen=True): " + ", ".join(found)


def test_the_frozen_checker_sees_plain_and_frozen_dataclasses(tmp_path):
    text = (
        "@dataclass\nclass AOptions: ...\n@dataclasses.dataclass(frozen=True)\nclass BConfig: ...\n"
        "@dataclass(frozen=False)\nclass CParams: ...\n@dataclass\nclass Result: ...\n"
    )
    assert probe_hits(unfrozen_options, text, tmp_path) == ["AOptions", "CParams"]


LONGEST_FUNCTION = 100  # lines, from `def` to its last line: what a reader can hold in mind


def test_no_function_in_the_package_is_over_100_lines():
    """Issue 22: a function too long to hold in mind (run_command was 283 lines, train 225) is split
    into named steps; this keeps every function of edgeseg, export, calib, runtime and the scripts in
    benchmarks/ and tools/ under the limit."""
    scripts = [p for folder in ("benchmarks", "tools") for p in sorted((ROOT / folder).glob("*.py"))]
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sources() + scripts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    ]
    assert not long, "split into named steps: " + ", ".join(long)


# ------------------------------------------------------------------------------------------ defaults
def _shared_defaults() -> dict[str, object]:
    """Parameter / option / field name -> the value `edgeseg/defaults.py` owns for it."""
    from edgeseg import defaults

    return {
        "max_miou_drop": defaults.MAX_MIOU_DROP,
        "max_drop": defaults.MAX_MIOU_DROP,
        "calib_images": defaults.CALIB_IMAGES,
        "calib": defaults.CALIB_IMAGES,  # benchmarks/cpu_runtimes.py --calib
        "eval_images": defaults.GATE_IMAGES,
        "default_n": defaults.GATE_IMAGES,
        "cpu_format": defaults.CPU_INT8_FORMAT,
    }


def _written_defaults(path: Path) -> list[tuple[int, str, object]]:
    """(line, name, value) of every literal default in `path`: function parameters (a typer.Option's
    first argument included), dataclass fields, and argparse `add_argument(..., default=...)`."""

    def value(node: ast.AST | None) -> ast.AST | None:
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "Option" and node.args:
            return node.args[0]  # typer.Option(DEFAULT, "--flag", ...)
        return node

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        pairs: list[tuple[str, ast.AST | None]] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            pairs += zip([a.arg for a in args[len(args) - len(node.args.defaults) :]], node.args.defaults)
            pairs += zip([a.arg for a in node.args.kwonlyargs], node.args.kw_defaults)
            if node.name == "open_calibration":
                pairs = [("calib_images" if n == "n" else n, d) for n, d in pairs]
        elif isinstance(node, ast.ClassDef):
            pairs += [(s.target.id, s.value) for s in node.body if isinstance(s, ast.AnnAssign)
                      and isinstance(s.target, ast.Name)]  # fmt: skip
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument" and node.args:
            flag = node.args[0].value if isinstance(node.args[0], ast.Constant) else ""
            pairs += [(str(flag).lstrip("-").replace("-", "_"), k.value) for k in node.keywords
                      if k.arg == "default"]  # fmt: skip
        for name, default in pairs:
            default = value(default)
            if isinstance(default, ast.Constant):
                found.append((default.lineno, name, default.value))
    return found


def test_shared_defaults_have_one_owner():
    """A default that several commands share is named from edgeseg/defaults.py, never written again
    (a copy drifts: `--calib-images` once defaulted to 32 in build and 64 in the library)."""
    shared = _shared_defaults()
    scripts = [p for folder in ("benchmarks", "tools") for p in sorted((ROOT / folder).glob("*.py"))]
    copies = [
        f"{path.relative_to(ROOT)}:{line}: {name} = {value!r} (use edgeseg.defaults)"
        for path in sources() + scripts
        if path.name != "defaults.py"
        for line, name, value in _written_defaults(path)
        if name in shared and value == shared[name]
    ]
    assert not copies, "\n".join(copies)


def test_the_defaults_checker_sees_each_kind_of_default(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import typer\n"
        "def f(max_miou_drop=1.0, *, cpu_format='qoperator'): ...\n"
        "def g(calib_images: int = typer.Option(32, '--calib-images')): ...\n"
        "class Opts:\n    eval_images: int = 16\n"
        "ap.add_argument('--max-miou-drop', type=float, default=1.0)\n"
        "def open_calibration(spec, card, n=32): ...\n"
    )
    names = [name for _, name, _ in _written_defaults(probe)]
    assert sorted(names) == sorted(
        ["max_miou_drop", "cpu_format", "calib_images", "eval_images", "max_miou_drop", "calib_images"]
    )


def test_one_line_errors_come_from_one_helper():
    """`edgeseg.errors.first_line` is the one way to cut an exception's message to one line (a copy
    once raised IndexError on an empty message)."""
    copy = re.compile(r"str\([\w.]+\)[^\n]*?\.splitlines\(\)[^\n]*?\[0\]")  # str(exc), str(msg), ...
    scripts = [p for folder in ("benchmarks", "tools") for p in sorted((ROOT / folder).glob("*.py"))]
    found = [
        f"{path.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in sources() + scripts
        if path.name != "errors.py"
        for text in [path.read_text()]
        for m in copy.finditer(text)
    ]
    assert not found, "use edgeseg.errors.first_line: " + ", ".join(found)


OPENS_A_MODEL = {  # what opens an artifact: each takes one BackendOptions object, never loose fields
    "Segmenter", "load_backend", "BackendLoader", "open_segmenter", "confusion", "evaluate",
    "OnnxRuntimeBackend", "OpenVINOBackend", "TensorRTBackend", "TorchBackend", "from_model",
}  # fmt: skip


def loose_backend_options(path: Path, root: Path = ROOT) -> list[str]:
    """Calls in `path` that hand a model-opening function backend options as keyword arguments
    (`threads=2`) or a `**dict`, instead of one BackendOptions."""
    from edgeseg.runtime.backends import BackendOptions

    fields = {f.name for f in dataclasses.fields(BackendOptions)}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        )
        if name not in OPENS_A_MODEL:
            continue
        loose = [k.arg or "**" for k in node.keywords if k.arg is None or k.arg in fields]
        if loose:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {name}(..., {', '.join(loose)})")
    return found


def test_backend_options_reach_every_backend_as_one_object():
    """Backend options have one form (docs/architecture.md, owners): a BackendOptions made at the
    public boundary (the CLI, RunPlan, `Segmenter`, `stream()`) and handed down whole; no caller of
    what opens a model spells them as keywords or a dict, and nothing below reads them loose."""
    scripts = [p for folder in ("benchmarks", "tools", "tests") for p in sorted((ROOT / folder).glob("*.py"))]
    found = [hit for path in sources() + scripts for hit in loose_backend_options(path)]
    assert not found, "pass BackendOptions(...): " + ", ".join(found)


def test_the_loose_options_checker_sees_keywords_and_dicts(tmp_path):
    text = (
        "Segmenter(p, threads=2)\n"
        "load_backend(p, **opts)\n"
        "backends.OnnxRuntimeBackend(p, card=c, model=b)\n"
        "Segmenter(p, BackendOptions(threads=2))\n"
        "OpenVINOBackend(p, options, model=b)\n"
    )
    assert probe_hits(loose_backend_options, text, tmp_path) == [
        "Segmenter(..., threads)",
        "load_backend(..., **)",
        "OnnxRuntimeBackend(..., card)",
    ]
