"""The house rules of docs/architecture.md: stage import directions (module level and inside
functions), the packaging list, ruff's first-party view, and source paths the docs cite."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
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


def test_the_private_access_checker_sees_attributes_and_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from edgeseg.runtime.pipeline import _END\n"
        "class A:\n"
        "    def f(self, stats):\n"
        "        self._own, super()._parent()\n"
        "        with stats._lock:\n"
        "            return self.pipe._channel, self.__dict__\n"
    )
    hits = private_reaches(probe, tmp_path)
    assert [h.split(": ", 1)[1] for h in hits] == [
        "from edgeseg.runtime.pipeline import _END",
        "stats._lock",
        "self.pipe._channel",
    ]
