"""`edgeseg models`: the model zoo table (torch-free: reads the measured catalog)."""

from __future__ import annotations

from typing import Any

import typer

from edgeseg.cli.options import json_option


def models_command(
    name: str | None = typer.Argument(None, help="Show one model (all its backbones)."),
    all_backbones: bool = typer.Option(
        False, "--all", "-a", help="List every supported backbone, not only each model's default."
    ),
    json_out: bool = json_option("the list"),
) -> None:
    """List the segmentation models: backbone, parameters, GFLOPs at 512x1024, output stride, paper."""
    from edgeseg.models.catalog import CATALOG_CLASSES, CATALOG_SIZE, entries, model_names

    if name is not None and name not in model_names():
        from edgeseg.errors import EdgesegError
        from edgeseg.models.registry import suggest

        raise EdgesegError(
            f"unknown model {name!r}{suggest(name, model_names())}; valid models: {', '.join(model_names())}"
        )
    rows = entries(name, all_backbones=all_backbones or name is not None)
    if json_out:
        from edgeseg.console import print_json

        print_json({"num_classes": CATALOG_CLASSES, "input_size": list(CATALOG_SIZE), "models": rows})
        return
    from rich import box

    from edgeseg.console import console, table

    h, w = CATALOG_SIZE
    body = [
        [
            r["model"],
            r["backbone"] + (" *" if r["default"] and (all_backbones or name) else ""),
            f"{r['params'] / 1e6:.1f}M",
            f"{r['gflops']:.1f}",
            "/".join(str(s) for s in r["output_strides"]) if r["output_strides"] else str(r["output_stride"]),
            r["cite"],
        ]
        for r in rows
    ]
    t = table(
        f"edgeseg models (params and GFLOPs with a {CATALOG_CLASSES}-class head, GFLOPs at {h}x{w})",
        ["model", "backbone", "params", "GFLOPs", "stride", "paper"],
        body,
        box=box.SIMPLE_HEAD,
    )
    for col in t.columns[:2]:  # names must stay whole and copy-pastable; the citation may shorten
        col.no_wrap, col.justify = True, "left"
    console.print(t)
    notes = (
        f"counted with {CATALOG_CLASSES} output classes (train uses the data's, export --num-classes/"
        "--classes or the weights'); stride = output stride of the head (a/b: selectable)"
    )
    if all_backbones or name:
        notes += "; * = default backbone"
    else:
        notes += "; --all lists every backbone"
    console.print(notes, style="dim")
    if name is not None:
        opts = _options_line(rows)
        if opts:
            console.print(f"options (edgeseg train/export {name} -o key=value): {opts}", style="dim")


def _options_line(rows: list[dict[str, Any]]) -> str:
    """Every option of a model's rows; one that only some backbones take names them."""
    takers: dict[str, list[str]] = {}
    defaults: dict[str, Any] = {}
    for row in rows:
        for key, value in row["options"].items():
            takers.setdefault(key, []).append(row["backbone"])
            defaults[key] = value
    return ", ".join(
        f"{key}={defaults[key]}" + ("" if len(who) == len(rows) else f" ({'/'.join(who)} only)")
        for key, who in takers.items()
    )


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)
