"""Python 3.8 / 3.9 support for the on-device part (JetPack 5.1 ships Python 3.8, and TensorRT's bindings
on a Jetson exist only for the system Python).

The code is written with `from __future__ import annotations`, so `str | None` and `list[str]` in
annotations are strings that nothing evaluates, except Typer: it reads each command's parameter types
with `typing.get_type_hints`, which on 3.8/3.9 cannot evaluate `X | None` (and on 3.8 not `list[X]`).
`resolve_annotations(fn)` evaluates them once with those forms rewritten to `typing.Optional/Union/List...`,
so the commands keep the modern spelling. On 3.10+ it does nothing.
"""

from __future__ import annotations

import ast
import sys
import typing
from typing import Any, Callable

_GENERICS = {
    "list": "List",
    "dict": "Dict",
    "tuple": "Tuple",
    "set": "Set",
    "frozenset": "FrozenSet",
    "type": "Type",
}


class _ToTyping(ast.NodeTransformer):
    """`a | b` -> `Union[a, b]`, `list[x]` -> `List[x]` (names looked up in the `typing` module)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:  # noqa: N802 - ast visitor name
        if not isinstance(node.op, ast.BitOr):
            return self.generic_visit(node)
        parts: list[ast.AST] = []
        stack: list[ast.AST] = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, ast.BinOp) and isinstance(item.op, ast.BitOr):
                stack += [item.right, item.left]
            else:
                parts.append(self.visit(item))
        union = ast.Attribute(ast.Name("__typing", ast.Load()), "Union", ast.Load())
        return ast.Subscript(union, _index(ast.Tuple(parts, ast.Load())), ast.Load())

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:  # noqa: N802
        node = self.generic_visit(node)  # type: ignore[assignment]
        if isinstance(node.value, ast.Name) and node.value.id in _GENERICS:
            node.value = ast.Attribute(ast.Name("__typing", ast.Load()), _GENERICS[node.value.id], ast.Load())
        return node


def _index(value: ast.expr) -> Any:
    """A subscript slice: 3.8 wraps it in ast.Index, 3.9+ takes the expression."""
    return ast.Index(value) if sys.version_info < (3, 9) else value  # type: ignore[attr-defined]


def evaluate(annotation: str, namespace: dict[str, Any]) -> Any:
    """The object `annotation` names, with PEP 604/585 syntax evaluated through `typing`."""
    tree = ast.fix_missing_locations(_ToTyping().visit(ast.parse(annotation, mode="eval")))
    code = compile(tree, "<annotation>", "eval")
    return eval(code, {**namespace, "__typing": typing})  # noqa: S307 - our own source's annotations


def resolve_annotations(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Replace `fn`'s string annotations by the objects they name (Python < 3.10 only)."""
    if sys.version_info >= (3, 10):
        return fn
    target = getattr(fn, "__wrapped__", fn)
    namespace = getattr(target, "__globals__", {})
    annotations = getattr(target, "__annotations__", {})
    for name, value in list(annotations.items()):
        if isinstance(value, str):
            annotations[name] = evaluate(value, namespace)
    return fn


def resolve_typer_app(app: Any) -> None:
    """resolve_annotations for every command, group callback and parameter callback of a Typer app."""
    if sys.version_info >= (3, 10):
        return
    import inspect

    apps = [app, *(group.typer_instance for group in app.registered_groups)]
    functions = []
    for typer_app in apps:
        functions += [c.callback for c in typer_app.registered_commands if c.callback is not None]
        info = getattr(typer_app, "registered_callback", None)
        if info is not None and info.callback is not None:
            functions.append(info.callback)
    for fn in functions:
        resolve_annotations(fn)
        for param in inspect.signature(fn).parameters.values():
            callback = getattr(param.default, "callback", None)
            if callable(callback):
                resolve_annotations(callback)
