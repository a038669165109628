"""`edgeseg data synth|info|preview|bag`: generate scene datasets/videos, inspect and validate datasets,
list a ROS 2 bag's image topics."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseg.card import MAX_INPUT_SIDE
from edgeseg.cli.options import COUNT, SEED, SIDE, finite, json_option
from edgeseg.defaults import MIN_VIDEO_FPS

data_app = typer.Typer(
    help="Datasets: generate synthetic scenes, inspect and validate folders, list bag topics.",
    no_args_is_help=True,
)


@data_app.command("synth")
def synth_cmd(
    out: Path = typer.Argument(
        ..., help="Output folder (dataset) or, with --video, folder or .mp4/.avi/.mkv file."
    ),
    num: int = typer.Option(200, "--num", "-n", **COUNT, help="Number of scenes."),
    height: int = typer.Option(256, "--height", **SIDE, help="Image height in pixels."),
    width: int = typer.Option(512, "--width", **SIDE, help="Image width in pixels."),
    seed: int = typer.Option(
        0, "--seed", **SEED, help="Generator seed (training uses 0; held-out synth:N uses 1000003)."
    ),
    jpg: bool = typer.Option(False, "--jpg", help="Write images as JPEG (smaller, lossy) instead of PNG."),
    video: bool = typer.Option(
        False, "--video", help="Write a temporally coherent video + per-frame masks instead."
    ),
    frames: int = typer.Option(150, "--frames", **COUNT, help="Video length in frames (with --video)."),
    fps: float = typer.Option(
        15.0,
        "--fps",
        parser=finite(above=0, at_least=MIN_VIDEO_FPS, at_most=1000),
        help="Video frame rate (with --video).",
    ),
    json_out: bool = json_option("the summary"),
) -> None:
    """Generate procedural road scenes (plain-folder layout) or a video with ground-truth masks."""
    from edgeseg.cli.progress import progress_bars
    from edgeseg.console import console, print_json
    from edgeseg.data.synth import SYNTH_CLASSES, write_dataset, write_video
    from edgeseg.output_checks import check_writable

    check_writable(out, "OUT", folder=not (video and out.suffix))
    if video:
        path = out / "synth.mp4" if out.suffix == "" else out
        with progress_bars(enabled=not json_out) as progress:
            video_path, masks = write_video(path, frames, height, width, seed, fps=fps, progress=progress)
        result = {"video": str(video_path), "masks": str(masks), "frames": frames, "fps": fps}
    else:
        with progress_bars(enabled=not json_out) as progress:
            root = write_dataset(
                out,
                num,
                height,
                width,
                seed,
                progress=progress,
                image_ext=".jpg" if jpg else ".png",
            )
        result = {"dataset": str(root), "images": num}
    result.update({"height": height, "width": width, "seed": seed, "classes": SYNTH_CLASSES})
    if json_out:
        print_json(result)
    elif video:
        console.print(
            f"wrote {frames} frames to [bold]{result['video']}[/] and masks to [bold]{result['masks']}[/]"
        )
    else:
        console.print(f"wrote {num} scenes ({height}x{width}, seed {seed}) to [bold]{result['dataset']}[/]")


@data_app.command("info")
def info_cmd(
    path: str = typer.Argument(..., help="Dataset folder (plain, Pascal VOC, Cityscapes) or synth:N."),
    split: str | None = typer.Option(None, "--split", help="Split to inspect (train, val, ...)."),
    limit: int | None = typer.Option(None, "--limit", **COUNT, help="Scan only the first N items."),
    masks_only: bool = typer.Option(
        False, "--masks-only", help="Skip decoding images (faster, no size check)."
    ),
    json_out: bool = json_option("the report"),
) -> None:
    """Detect the format, validate every pair, and print class pixel frequencies."""
    from edgeseg.cli.progress import progress_bars
    from edgeseg.console import console, print_json, table
    from edgeseg.data import open_dataset
    from edgeseg.data.dataset_stats import dataset_stats

    ds = open_dataset(path, split=split)
    with progress_bars(enabled=not json_out) as progress:
        stats = dataset_stats(ds, limit=limit, check_images=not masks_only, progress=progress)
    d = stats.to_dict()
    d["path"] = path
    d["split"] = split
    if json_out:
        print_json(d)
        return
    sizes = ", ".join(f"{s['width']}x{s['height']} ({s['count']})" for s in d["sizes"][:4])
    console.print(
        table(
            f"{path}",
            ["property", "value"],
            [
                ["format", d["format"]],
                ["split", split or "all"],
                ["images", d["images"]],
                ["scanned", d["scanned"]],
                ["sizes (WxH)", sizes or "-"],
                ["classes", d["num_classes"]],
                ["ignored pixels", f"{100 * d['ignored_fraction']:.2f}%"],
                ["listing hash", d["listing_hash"][:16]],
            ],
        )
    )
    rows = [
        [c["id"], c["name"], f"[rgb({c['color'][0]},{c['color'][1]},{c['color'][2]})]■[/] {tuple(c['color'])}",
         c["pixels"], f"{100 * c['frequency']:.2f}%"]
        for c in d["classes"]
    ]  # fmt: skip
    console.print(
        table("class pixel frequencies (labelled pixels)", ["id", "class", "colour", "pixels", "share"], rows)
    )
    absent = [c["name"] for c in d["classes"] if c["pixels"] == 0]
    if absent:
        console.print(f"[yellow]classes with no pixels:[/] {', '.join(absent)}")


@data_app.command("preview")
def preview_cmd(
    path: str = typer.Argument(..., help="Dataset folder (plain, Pascal VOC, Cityscapes) or synth:N."),
    out: Path = typer.Argument(..., help="Output image (.png or .jpg)."),
    num: int = typer.Option(
        6, "--num", "-n", **COUNT, help="Number of items (evenly spaced over the dataset)."
    ),
    split: str | None = typer.Option(None, "--split", help="Split to show (train, val, ...)."),
    tile_width: int = typer.Option(
        384, "--tile-width", min=16, max=MAX_INPUT_SIDE, help="Width of each tile in pixels."
    ),
) -> None:
    """Write a contact sheet (image | labels in the dataset's colours; black-and-white hatching = ignore) to check labelling."""
    from edgeseg.console import console
    from edgeseg.data import open_dataset
    from edgeseg.data.preview import write_preview
    from edgeseg.output_checks import check_apart, check_writable

    check_writable(out, "OUT")
    check_apart([("OUT", out)], [("PATH", path)], inside={"OUT"})
    ds = open_dataset(path, split=split)
    written = write_preview(ds, out, num=num, tile_width=tile_width)
    console.print(f"wrote {min(num, len(ds))} items of {path} to [bold]{written}[/]")


@data_app.command("bag")
def bag_cmd(
    path: Path = typer.Argument(..., help="rosbag2 folder (MCAP or SQLite) or its .mcap/.db3 file."),
    json_out: bool = json_option("the topics"),
) -> None:
    """List a ROS 2 bag's image topics: message type, count, encoding and size (of the first message)."""
    from edgeseg.console import console, print_json, table
    from edgeseg.runtime.bag import bag_topics

    topics, span = bag_topics(path)
    images = [t.to_dict() for t in topics if t.is_image]
    others = [{"topic": t.topic, "type": t.msgtype, "messages": t.count} for t in topics if not t.is_image]
    if json_out:
        print_json({**span, "image_topics": images, "other_topics": others})
        return
    rows = [
        [t["topic"], t["type"].rsplit("/", 1)[-1], t["messages"], t["encoding"],
         None if t["size"] is None else f"{t['size'][0]}x{t['size'][1]}"]
        for t in images
    ]  # fmt: skip
    title = f"{path}: {span['messages']} messages over {span['duration_s']} s"
    console.print(table(title, ["image topic", "type", "messages", "encoding", "size (WxH)"], rows))
    if not images:
        console.print("[yellow]no sensor_msgs/msg/Image or CompressedImage topics[/]")
    if others:
        console.print(f"[dim]{len(others)} other topic(s): {', '.join(o['topic'] for o in others)}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
