"""The options of `edgeseg run`, one definition each (the command's signature lists them in --help
order). Options other commands share (--model, --card, --allow-other-gpu, --backend, --providers,
--device, --workdir, --alpha, --report, --json, --input-size, --native-size) live in options.py."""

from __future__ import annotations

from typing import Any

import typer

from edgeseg.cli.options import finite

DEFAULT_SYNTHETIC_FRAMES = 300


def workers() -> Any:
    return typer.Option(
        None,
        "--workers",
        help="Inference workers on consecutive frames: throughput for files, latency for live sources.",
        show_default="2 for a file and a light model (up to 64 MB) on a CPU: ONNX Runtime or OpenVINO, else 1",
    )


def camera() -> Any:
    return typer.Option(None, "--camera", metavar="<int>", help="Camera index (live).")


def video() -> Any:
    return typer.Option(None, "--video", metavar="<path>", help="Video file (every frame processed).")


def images() -> Any:
    return typer.Option(None, "--images", metavar="<str>", help="Image folder or glob (every image).")


def url() -> Any:
    return typer.Option(None, "--url", metavar="<str>", help="rtsp:// or http:// stream (live).")


def gst() -> Any:
    return typer.Option(None, "--gst", metavar="<str>", help="GStreamer pipeline ending in appsink (live).")


def synthetic() -> Any:
    return typer.Option(
        0,
        "--synthetic",
        count=True,
        metavar="",
        show_default="the source when no other is given",
        help="Generated street scenes with ground truth. Every source option "
        "repeats (--camera 0 --camera 1, --synthetic --synthetic): the streams run through one model, "
        "batched.",
    )


def frames() -> Any:
    return typer.Option(
        None,
        "--frames",
        "-n",
        help="Stop after N captured frames, per stream.",
        show_default=f"{DEFAULT_SYNTHETIC_FRAMES} for --synthetic, else the whole source",
    )


def loop() -> Any:
    return typer.Option(False, "--loop", help="Repeat a video or image folder (soak, demos).")


def realtime() -> Any:
    return typer.Option(
        False, "--realtime", help="Replay a file at its frame rate like a camera (frames get dropped)."
    )


def synthetic_size() -> Any:
    return typer.Option(
        None, "--synthetic-size", help="HxW of synthetic frames.", show_default="the model's input size"
    )


def labels() -> Any:
    return typer.Option(
        None, "--labels", help="Ground-truth masks paired by file stem (video frames: <stem>_000123)."
    )


def show() -> Any:
    return typer.Option(
        False,
        "--show",
        help="Show the run: an OpenCV window, or, with pip's headless OpenCV, the live view in your browser.",
    )


def serve() -> Any:
    return typer.Option(
        None,
        "--serve",
        help="Serve a live view (MJPEG stream, FPS, latency, class shares, mIoU) over HTTP at "
        "PORT, :PORT or HOST:PORT; 127.0.0.1 unless a host is given (0.0.0.0: every interface).",
    )


def save() -> Any:
    return typer.Option(None, "--save", help="Write the annotated video (.mp4/.avi).")


def save_masks() -> Any:
    return typer.Option(None, "--save-masks", help="Write class-id PNGs here.")


def log() -> Any:
    return typer.Option(None, "--log", help="Per-frame JSONL log.")


def tile() -> Any:
    return typer.Option(
        False,
        "--tile",
        help="Several streams: --show/--save draw them side by side in one window/video (--serve always does).",
    )


def mode() -> Any:
    return typer.Option("overlay", "--mode", help="Visual mode: overlay, mask or side-by-side.")


def legend() -> Any:
    return typer.Option(False, "--legend", help="Draw class names and colours.")


def reconnect() -> Any:
    return typer.Option(
        False, "--reconnect", help="Reopen a live source that stops delivering (with backoff)."
    )


def reconnect_timeout() -> Any:
    return typer.Option(
        30.0,
        "--reconnect-timeout",
        parser=finite(above=0),
        help="Give up after this many seconds without frames.",
    )


def bag() -> Any:
    return typer.Option(
        None,
        "--bag",
        metavar="<path>",
        help="rosbag2 folder or .mcap/.db3 file (every frame; --realtime: recorded speed).",
    )


def topic() -> Any:
    return typer.Option(
        None, "--topic", help="Image topic of --bag.", show_default="the bag's only image topic"
    )


def labels_topic() -> Any:
    return typer.Option(
        None, "--labels-topic", help="Topic of --bag with mono8 class-id masks, paired by header stamp."
    )


def save_bag() -> Any:
    return typer.Option(None, "--save-bag", help="Write class maps (mono8) and per-frame stats as a new bag.")


def save_bag_overlay() -> Any:
    return typer.Option(
        False, "--save-bag-overlay", help="Also write the --mode rendering (bgr8) into --save-bag."
    )


def bag_storage() -> Any:
    return typer.Option("mcap", "--bag-storage", help="--save-bag storage: mcap or sqlite3.")
