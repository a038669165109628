"""`edgeseg ros2`: run the segmentation node (needs a sourced ROS 2; see docs/ros2.md).

Arguments after `--ros-args` go to ROS untouched (remapping, namespace, node name), which is how
`ros2 launch` starts any executable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from edgeseg.cli.options import (
    COUNT,
    allow_other_gpu_option,
    alpha_option,
    backend_option,
    card_option,
    device_option,
    finite,
    input_size_option,
    json_option,
    model_option,
    native_size_option,
    providers_option,
    report_option,
    threads_option,
    workdir_option,
)


def ros2_command(
    ctx: typer.Context,
    model: str | None = model_option(),
    card_file: Path | None = card_option(),
    allow_other_gpu: bool = allow_other_gpu_option(),
    backend: str | None = backend_option(),
    providers: str = providers_option(),
    threads: int | None = threads_option(),
    device: str = device_option(),
    input_size: str | None = input_size_option(),
    native_size: bool = native_size_option(),
    topic: str = typer.Option("image", "--topic", help="Image topic to subscribe to (remappable: `image`)."),
    compressed: bool | None = typer.Option(
        None,
        "--compressed/--raw",
        help="sensor_msgs/CompressedImage or Image.",
        show_default="compressed when the topic ends in /compressed",
    ),
    reliable: bool = typer.Option(
        False, "--reliable", help="Subscribe RELIABLE instead of BEST_EFFORT (which matches any camera)."
    ),
    visual: str = typer.Option(
        "overlay", "--visual", help="Also publish ~/overlay as: overlay, mask, side-by-side or none."
    ),
    alpha: float = alpha_option(),
    node_name: str = typer.Option("edgeseg", "--node-name", help="Node name (topics are ~/class_map ...)."),
    frames: int | None = typer.Option(
        None, "--frames", "-n", **COUNT, help="Stop after N frames.", show_default="run on"
    ),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        parser=finite(above=0),
        help="Exit with code 5 after this many seconds without an image (lost camera).",
    ),
    report: Path | None = report_option(),
    workdir: Path | None = workdir_option(),
    json_out: bool = json_option("the final report"),
) -> None:
    """ROS 2 node: image topic in; class map (mono8), overlay (bgr8) and stats out, latest frame only."""
    from edgeseg.cli.options import parse_inference_size
    from edgeseg.cli.run import publish_report
    from edgeseg.errors import EdgesegError, ExitCode
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.plan import Outputs, find_model
    from edgeseg.runtime.ros2node import NodeOptions, run_node
    from edgeseg.runtime.segmenter import Segmenter

    options = NodeOptions(
        topic=topic, compressed=compressed, reliable=reliable, visual=visual, alpha=alpha,
        node_name=node_name, max_frames=frames, timeout=timeout,
    )  # fmt: skip
    outputs = Outputs(report=report)
    outputs.check()  # now, not when the node stops
    artifact, card = find_model(model, outputs, workdir=workdir, prefer=backend, card_file=card_file)
    opening = BackendOptions(
        backend=backend,
        providers=providers,
        threads=threads,
        device=device,
        card=card,
        allow_other_gpu=allow_other_gpu,
        input_size=parse_inference_size(input_size, native_size),
    )
    with Segmenter(artifact, opening) as seg:
        result = run_node(seg, options, ros_args=[sys.argv[0], *ctx.args], own_process=True)
    result.artifact = artifact
    report_failed = publish_report(result, card.classes, report=report, json_out=json_out)
    if report_failed is not None:
        raise report_failed
    assert result.node is not None
    if result.node.stopped_by == "timeout":
        raise EdgesegError(
            f"no image on {result.node.topic} for {timeout:g} s", exit_code=ExitCode.SOURCE_LOST
        )
    if result.node.stopped_by == "interrupt":
        raise typer.Exit(result.exit_code or ExitCode.INTERRUPTED)  # 130 Ctrl-C, 143 SIGTERM


def register(app: typer.Typer) -> None:
    app.command("ros2", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        ros2_command
    )
