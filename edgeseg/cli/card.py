"""`edgeseg card`: write a model card for a net made elsewhere, optionally into its ONNX's metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli.options import classes_option, json_option
from edgeseg.errors import EdgesegError


def card_command(
    output_path: Path | None = typer.Argument(
        None, help="Card JSON to write.", show_default="<onnx>.card.json beside --onnx"
    ),
    onnx_path: Path | None = typer.Option(
        None,
        "--onnx",
        help="The ONNX the card describes: input size, output kind and classes are checked "
        "against (and, when not given, read from) its graph.",
    ),
    embed: bool = typer.Option(
        False, "--embed", help="Also write the card into the ONNX's metadata (atomically)."
    ),
    classes: str | None = classes_option(),
    mean: str | None = typer.Option(None, "--mean", help="Normalisation mean, R,G,B in 0..1 (ImageNet's)."),
    std: str | None = typer.Option(None, "--std", help="Normalisation std, R,G,B in 0..1 (ImageNet's)."),
    input_size: str | None = typer.Option(
        None, "--input-size", help="HxW the net takes.", show_default="the ONNX's static input size"
    ),
    palette: Path | None = typer.Option(
        None,
        "--palette",
        help="Colours, one 'R G B' line per class.",
        show_default="the classes file's, else the VOC map",
    ),
    output: str | None = typer.Option(
        None,
        "--output",
        help="logits (N x C x H x W) or labels (N x H x W).",
        show_default="from the ONNX, else logits",
    ),
    color_order: str = typer.Option(
        "RGB", "--color-order", help="Channel order the net expects: RGB or BGR."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model name in the card.", show_default="the file's stem"
    ),
    json_out: bool = json_option("the card"),
) -> None:
    """Write a model card (classes, palette, mean/std, input size, output kind) for an ONNX made elsewhere."""
    from edgeseg.card_make import make_card, parse_triple, read_palette

    if output_path is None and onnx_path is None:
        raise EdgesegError("say where the card goes: edgeseg card OUT.card.json, or --onnx MODEL.onnx")
    if embed and onnx_path is None:
        raise EdgesegError("--embed needs --onnx MODEL.onnx")
    from edgeseg.output_checks import check_apart, check_writable

    target = output_path or onnx_path.with_suffix(".card.json")  # type: ignore[union-attr]
    check_writable(target, "OUTPUT_PATH" if output_path else "the card")
    check_apart(
        [("OUTPUT_PATH", target)], [("--onnx", onnx_path), ("--classes", classes), ("--palette", palette)]
    )
    if target.suffix.lower() != ".json":  # `edgeseg card m.onnx` used to write JSON over the model
        raise EdgesegError(
            f"OUTPUT_PATH {target} is where the card's JSON goes: give it a .json name "
            "(the ONNX the card describes is --onnx)"
        )
    facts: dict = {
        "input_size": None,
        "dynamic": False,
        "dynamic_batch": False,
        "output": None,
        "num_classes": None,
    }
    if onnx_path is not None:
        from edgeseg.export.graph import graph_facts, load_onnx

        facts = graph_facts(load_onnx(onnx_path, load_external_data=False))
    names, colours, size = _classes_and_size(classes, input_size, facts)
    card = make_card(
        model or (onnx_path or output_path).name.split(".")[0],  # type: ignore[union-attr]
        names,
        palette=read_palette(palette) if palette else colours,
        **({"mean": parse_triple(mean, "--mean")} if mean else {}),
        **({"std": parse_triple(std, "--std")} if std else {}),
        input_size=size,
        output=output or facts["output"] or "logits",
        color_order=color_order,
        dynamic=facts["dynamic"],
        dynamic_batch=facts["dynamic_batch"],
        extra={"card": "edgeseg card"},
    )
    if onnx_path is not None:
        from edgeseg.export.graph import check_card_fits, embed_card, load_onnx

        if embed:
            embed_card(onnx_path, card)
        else:
            check_card_fits(load_onnx(onnx_path, load_external_data=False), card)
    card.save_json(target)
    _show(card, target, onnx_path if embed else None, json_out)


def _classes_and_size(
    classes: str | None, input_size: str | None, facts: dict[str, Any]
) -> tuple[list[str], list[tuple[int, int, int]] | None, tuple[int, int]]:
    """Class names, the classes file's colours (if it has them) and the input size: from the
    options, else from the ONNX's graph (`facts`), else one line saying which option to pass."""
    from edgeseg.card import MIN_INPUT_SIDE
    from edgeseg.cli.options import parse_classes, parse_hw

    names = colours = None
    if classes is not None:
        count, names, colours = parse_classes(classes)
    elif facts["num_classes"]:
        count = facts["num_classes"]
    else:
        raise EdgesegError(
            "pass --classes names.txt (or a count N): the ONNX does not say how many classes it has"
        )
    size = parse_hw(input_size, minimum=MIN_INPUT_SIDE) if input_size else facts["input_size"]
    if size is None:
        raise EdgesegError("pass --input-size HxW: the ONNX's input size is dynamic")
    return names or [f"class_{i}" for i in range(count)], colours, size


def _show(card: Any, target: Path, embedded: Path | None, json_out: bool) -> None:
    """The card written (JSON with --json, else two lines)."""
    from edgeseg.console import console, print_json

    if json_out:
        print_json({"card": str(target), "embedded": str(embedded) if embedded else None, **card.to_dict()})
        return
    console.print(
        f"card: {target}" + (f" (also embedded in {embedded})" if embedded else ""), highlight=False
    )
    console.print(
        f"{card.num_classes} classes ({', '.join(card.classes[:6])}{', ...' if card.num_classes > 6 else ''}), "
        f"input {card.input_size[0]}x{card.input_size[1]}{' (dynamic H/W)' if card.dynamic else ''}"
        f"{', dynamic batch' if card.dynamic_batch else ''}, "
        f"{card.output}, {card.color_order}, mean {list(card.mean)}, std {list(card.std)}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("card")(card_command)
