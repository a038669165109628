"""One plan for every way a run starts. `edgeseg run`, `stream()`, the demo, the benchmarks and the
ROS 2 node say what to run in a `RunPlan` (model, sources, outputs, view, tiling, runtime options),
which checks the options when it is made and `open()`s a Pipeline (one source) or a MultiStream
(several, batched through one model), as jetson-inference turns a URI into a source or an output.

    plan = RunPlan(model="model.onnx", sources=({"video": "drive.mp4"},), outputs=Outputs(video=Path("out.mp4")))
    run = plan.open()                          # the model is found and opened, outputs created
    run.driver.run()
    print(run.report().to_dict())              # the JSON form of `edgeseg run --json`
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.preprocess import runs_native
from edgeseg.runtime.backends import BackendOptions
from edgeseg.runtime.backends.base import given_options, sized
from edgeseg.runtime.backends.choice import describe_choice
from edgeseg.runtime.draw import Renderer
from edgeseg.runtime.launch import open_multistream, open_pipeline
from edgeseg.runtime.multistream import STREAM_FIELD, MultiStream, open_sources, stream_path
from edgeseg.runtime.pipeline import Pipeline
from edgeseg.runtime.report import LabelsMatched, RunReport
from edgeseg.runtime.run_stats import RunStats
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.sinks import (
    DrawSink,
    JsonlSink,
    MaskSink,
    Sink,
    VideoSink,
    ViewPlan,
    WindowSink,
    plan_view,
)
from edgeseg.runtime.sources import LabelLookup, Source, open_source
from edgeseg.runtime.streaming.frame import FrameResult
from edgeseg.runtime.streaming.reconnect import Reconnect

StreamSpec = Union[
    "Mapping[str, Any]", Source
]  # `open_source` keywords ({"camera": 0}) or a Source (3.8: no `|`)


@dataclass(frozen=True)
class Outputs:
    """The files a run writes (`edgeseg run --save/--save-masks/--log/--save-bag/--report`). With
    several streams a `{stream}` in a name stands for one file per stream.

    Checked with the plan (`check`): every path must be writable before the model loads, so a typo
    fails in the first second, not when the first frame (or the report, an hour later) is written."""

    video: Path | None = None  # the annotated video (--save)
    masks: Path | None = None  # class-id PNGs (--save-masks), a folder
    log: Path | None = None  # per-frame JSONL (--log)
    bag: Path | None = None  # class maps and stats as a rosbag2 (--save-bag), a folder
    bag_storage: str = "mcap"
    bag_overlay: bool = False  # also the rendering, in the bag
    report: Path | None = None  # the final report as JSON (--report); written by the caller

    def check(self) -> None:
        from edgeseg.output_checks import check_writable

        if self.video is not None:
            VideoSink.codec_for(self.video)
        for option, path in (("--save", self.video), ("--log", self.log), ("--report", self.report)):
            if path is not None:
                check_writable(path, option)
        for option, folder in (("--save-masks", self.masks), ("--save-bag", self.bag)):  # a bag is a folder
            if folder is not None:
                check_writable(folder, option, folder=True)

    def check_apart(self, inputs: list[tuple[str, Any]]) -> None:
        """No output may overwrite an input (`edgeseg.output_checks.check_apart`): checked once the model is
        found, before it loads."""
        from edgeseg.output_checks import check_apart

        outputs = [("--save", self.video), ("--log", self.log), ("--report", self.report),
                   ("--save-masks", self.masks), ("--save-bag", self.bag)]  # fmt: skip
        check_apart(outputs, inputs, folders={"--save-masks", "--save-bag"})

    def written(self) -> dict[str, Path]:
        """Each file output by its option name (save, save_masks, log, save_bag), for "wrote ..." lines."""
        named = {"save": self.video, "save_masks": self.masks, "log": self.log, "save_bag": self.bag}
        return {option: path for option, path in named.items() if path is not None}

    def sinks(self, classes: list[str], name: str | None, *, tile: bool) -> list[Sink]:
        """The file sinks of the one stream (`name` None) or of the stream `name` of several (with
        `tile`, the video is the tiles' and not the stream's)."""
        sinks: list[Sink] = []
        if self.video is not None and (name is None or not tile):
            sinks.append(VideoSink(self.video if name is None else stream_path(self.video, name), fps=None))
        if self.masks is not None:
            sinks.append(MaskSink(self.masks if name is None else masks_folder(self.masks, name)))
        if self.log is not None:
            sinks.append(JsonlSink(self.log if name is None else stream_path(self.log, name), classes))
        if self.bag is not None:
            from edgeseg.runtime.bag import BagSink

            path = self.bag if name is None else stream_path(self.bag, name)
            sinks.append(BagSink(path, classes, storage=self.bag_storage, overlay=self.bag_overlay))
        return sinks


def find_model(
    model: str | Path | None,
    outputs: Outputs,
    *,
    workdir: Path | None = None,
    prefer: str | None = None,
    card_file: Path | None = None,
    inputs: Sequence[tuple[str, Any]] = (),
) -> tuple[Path, ModelCard]:
    """The artifact a run opens, found as `edgeseg run` finds it (a path, an export name in `workdir`,
    None: the newest export, else the shipped model), and its card (`card_file` if given), once no
    output overwrites it or another input. `RunPlan` and the ROS 2 command (whose source, a topic, is
    made with the node) both find their model here."""
    from edgeseg import workspace
    from edgeseg.artifacts import read_card

    artifact = workspace.find_artifact(
        None if model is None else str(model), workspace.workdir(workdir), backend=prefer
    )
    outputs.check_apart([("--model", artifact), ("--card", card_file), *inputs])
    return artifact, read_card(artifact, card_file)


def masks_folder(folder: Path, name: str) -> Path:
    """--save-masks for one of several streams: {stream} filled in, else a sub-folder per stream."""
    return stream_path(folder, name) if STREAM_FIELD in str(folder) else folder / name


@dataclass(frozen=True)
class View:
    """How a run is shown: a window (--show), the live view over HTTP (--serve), several streams side
    by side (--tile), and how frames are drawn. `draw`: draw every frame even when nothing shows it
    (a `DrawSink` per stream), so a benchmark times drawing without a window or an encoder."""

    show: bool = False
    serve: str | None = None
    tile: bool = False
    mode: str = "overlay"
    alpha: float = 0.5
    legend: bool = False
    draw: bool = False

    def renderer(self, card: ModelCard) -> Renderer:
        return Renderer(card.palette, card.classes, mode=self.mode, alpha=self.alpha, legend=self.legend)


@dataclass(frozen=True)
class RunPlan:
    """What to run, checked when made (one clear line for options that cannot work together).

    `model`: an artifact path, an export name (found in `workdir` as `edgeseg run` finds it, None: the
    newest export, else the shipped model) or an open Segmenter. `sources`: one per stream. `sinks`:
    the caller's own outputs (for several streams, a function of the stream's name or a mapping).
    `say`: where the live view's address goes (None: nowhere)."""

    model: str | Path | Segmenter | None = None
    sources: tuple[StreamSpec, ...] = ()
    outputs: Outputs = Outputs()
    view: View = View()
    sinks: Sequence[Sink] | Callable[[str], Any] | Mapping[str, Any] = ()
    labels: Path | None = None  # ground-truth folder, paired by frame name (--labels)
    backend_options: BackendOptions = BackendOptions()  # how the model opens: runtime, threads, device, ...
    workers: int | None = None
    max_frames: int | None = None
    realtime: bool = False
    live: bool | None = None
    reconnect: Reconnect = field(default_factory=Reconnect)
    loop: bool = False
    synthetic_size: tuple[int, int] | None = None  # None: the size frames run at (256x512 at native size)
    card_file: Path | None = None  # a card for an artifact made elsewhere (--card)
    workdir: Path | None = None
    prefer: str | None = None  # which file type to pick when the model is an export name (--backend)
    own_process: bool = False  # this process owns its threads (a command, a benchmark): see open_pipeline
    say: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        given_options(self.backend_options)  # made and checked by the caller; a dict of them is refused here
        if not self.sources:
            raise EdgesegError("a run needs at least one source")
        if self.max_frames is not None and self.max_frames < 1:
            raise EdgesegError("--frames must be at least 1")
        if self.reconnect.timeout is not None and not 0 < self.reconnect.timeout < float("inf"):
            raise EdgesegError("--reconnect-timeout must be a positive number of seconds")
        self.outputs.check()
        labels_topic = any(isinstance(s, Mapping) and s.get("labels_topic") for s in self.sources)
        if self.labels is not None and labels_topic:
            raise EdgesegError("ground truth comes from --labels or --labels-topic, not both")
        if self.synthetic and self.labels is not None:
            raise EdgesegError("--synthetic brings its own ground truth; --labels is for video/images")
        self._check_streams()
        if (
            len(self.sources) > 1
            and self.sinks
            and not (callable(self.sinks) or isinstance(self.sinks, Mapping))
        ):
            raise EdgesegError(
                "sinks for several streams: a function of the stream's name or a {name: ...} mapping, "
                f"got {type(self.sinks).__name__}"
            )

    @property
    def synthetic(self) -> int:
        """How many streams are the generated scenes (they carry their own ground truth)."""
        return sum(1 for s in self.sources if isinstance(s, Mapping) and "synthetic" in s)

    def _check_streams(self) -> None:
        """Output options that cannot work with this many streams."""
        streams, view, out = len(self.sources), self.view, self.outputs
        if streams == 1:
            if view.tile:
                raise EdgesegError("--tile puts several streams side by side; give two or more sources")
            return
        if self.workers not in (None, 1):
            raise EdgesegError(
                f"{streams} streams share one batched inference worker; --workers is for a single source"
            )
        if view.tile and not (view.show or out.video or view.serve):
            raise EdgesegError("--tile arranges what --show and --save draw; add one of them")
        if out.video is not None and not view.tile and STREAM_FIELD not in str(out.video):
            raise EdgesegError(
                f"--save with {streams} streams needs {STREAM_FIELD} in the file name (one video per stream, "
                f"e.g. out_{STREAM_FIELD}.mp4) or --tile (one video, the streams side by side)"
            )
        for option, path, example in [("--log", out.log, "frames_"), ("--save-bag", out.bag, "out_")]:
            if path is not None and STREAM_FIELD not in str(path):
                raise EdgesegError(
                    f"{option} with {streams} streams needs {STREAM_FIELD} in the name "
                    f"(one per stream, e.g. {example}{STREAM_FIELD}{Path(path).suffix})"
                )

    def replace(self, **changes: Any) -> RunPlan:
        return dataclasses.replace(self, **changes)

    # --- opening -----------------------------------------------------------------------------------
    def find_model(self) -> tuple[Path | None, ModelCard]:
        """The artifact this plan runs (None for an open Segmenter) and its card."""
        if isinstance(self.model, Segmenter):
            return None, self.model.card
        sources = [
            (f"--{key}", spec[key])
            for spec in self.sources
            if isinstance(spec, Mapping)
            for key in ("video", "images", "bag")
            if spec.get(key) is not None
        ]
        return find_model(
            self.model, self.outputs, workdir=self.workdir, prefer=self.prefer, card_file=self.card_file,
            inputs=[("--labels", self.labels), *sources],
        )  # fmt: skip

    def open(self) -> OpenRun:
        """Find and open the model, the sources and the outputs; nothing streams yet."""
        artifact, card = self.find_model()
        return self.open_with(artifact, card)

    def open_with(self, artifact: Path | None, card: ModelCard) -> OpenRun:
        """`open()` once the model is found (`find_model`), so the caller may check its own options
        against the artifact in between."""
        if self.synthetic:
            _check_synthetic_classes(card.classes)
        options = self.backend_options
        if artifact is not None:  # the card read once (with --card if given), at the asked inference size
            options = sized(artifact, options.replace(card=options.card or card))
            assert options.card is not None
            card = options.card
        elif options.input_size is not None:
            raise EdgesegError(
                "an open Segmenter runs at the size it was opened with: give input_size to its BackendOptions"
            )
        size = self.synthetic_size or ((256, 512) if runs_native(card) else tuple(card.input_size))
        run = OpenRun(self, artifact, card)
        model = self.model if isinstance(self.model, Segmenter) else artifact
        assert model is not None
        renderer = self.view.renderer(card)
        view = plan_view(show=self.view.show, serve=self.view.serve)
        title = f"edgeseg: {artifact.name if artifact else card.model}"
        common: dict[str, Any] = {
            "options": options,
            "own_process": self.own_process,
            "max_frames": self.max_frames,
            "reconnect": self.reconnect,
            "realtime": self.realtime,
        }
        if self.live is not None:
            common["live"] = self.live
        parts = _Parts(run, model, size, renderer, view, title, common)
        run.driver = self._open_one(parts) if len(self.sources) == 1 else self._open_several(parts)
        return run

    def _open_one(self, parts: _Parts) -> Pipeline:
        run, model, size, renderer, view, title = parts[:6]
        spec = self.sources[0]
        source = (
            spec if isinstance(spec, Source) else open_source(**spec, loop=self.loop, synthetic_size=size)
        )
        lookup = run.lookup()
        sinks: list[Sink] = view.sinks(renderer, title=title, say=self.say)
        sinks += self.outputs.sinks(run.card.classes, None, tile=False)
        sinks += list(self.sinks)  # type: ignore[arg-type]
        if self.view.draw:
            sinks.append(DrawSink())
        needs_render = any(s.needs_render for s in sinks)
        return open_pipeline(
            model, source, sinks, workers=self.workers, labels=lookup, renderer=renderer if needs_render else None,
            **parts.driver_options,
        )  # fmt: skip

    def _open_several(self, parts: _Parts) -> MultiStream:
        run, model, size, renderer, view, title = parts[:6]
        sources = open_sources(self.sources, loop=self.loop, synthetic_size=size)
        tile, classes, own = self.view.tile, run.card.classes, self.sinks

        def outputs(name: str) -> list[Sink]:
            """A stream's own sinks (the live view and, with --tile, the window and video show every
            stream in one: the tiles)."""
            sinks = [WindowSink(f"{title} [{name}]")] if view.window and not tile else []
            sinks += self.outputs.sinks(classes, name, tile=tile)
            if own:
                sinks += list((own(name) if callable(own) else own.get(name)) or [])  # type: ignore[union-attr]
            if self.view.draw:
                sinks.append(DrawSink())
            return sinks

        tiles: list[
            Sink
        ] = []  # every stream side by side: the live view always; window and video with --tile
        if tile and view.window:
            tiles.append(WindowSink(title))
        if view.serve is not None:
            tiles += dataclasses.replace(view, window=False).sinks(renderer, title=title, say=self.say)
        if tile and self.outputs.video is not None:
            tiles.append(VideoSink(self.outputs.video, fps=None))
        return open_multistream(
            model, sources, outputs, labels=run.lookup, tile=tiles or None, renderer=renderer,
            **parts.driver_options,
        )  # fmt: skip


class _Parts(NamedTuple):
    """What opening one stream and several share: the opened run, the model, the size generated
    frames are made at, how frames are drawn and shown, the window title and the driver's options."""

    run: OpenRun
    model: Path | Segmenter
    size: tuple[int, int]
    renderer: Renderer
    view: ViewPlan
    title: str
    driver_options: dict[str, Any]


def _check_synthetic_classes(classes: list[str]) -> None:
    from edgeseg.data.synth_layout import SYNTH_CLASSES

    if len(classes) != len(SYNTH_CLASSES):
        raise EdgesegError(
            f"--synthetic scores against {len(SYNTH_CLASSES)} street classes but this model predicts "
            f"{len(classes)}; pass a --video/--images/--camera source for it"
        )


class OpenRun:
    """A plan opened: the Pipeline or MultiStream that runs it (`driver`), the artifact and card, and
    the ground-truth folders it reads."""

    driver: Pipeline | MultiStream

    def __init__(self, plan: RunPlan, artifact: Path | None, card: ModelCard) -> None:
        self.plan, self.artifact, self.card = plan, artifact, card
        self.lookups: list[LabelLookup] = []

    def lookup(self, name: str | None = None) -> LabelLookup | None:
        """The ground truth of one stream (a folder is read once per stream, each counting its matches)."""
        if self.plan.labels is None:
            return None
        self.lookups.append(LabelLookup(self.plan.labels, self.card.palette))
        return self.lookups[-1]

    @property
    def stats(self) -> RunStats:
        return self.driver.stats

    def report(self) -> RunReport:
        report = self.driver.run_report()
        report.artifact = self.artifact
        if self.artifact is not None:
            report.runtime = describe_choice(self.artifact, self.plan.backend_options)
        if self.lookups:
            report.labels = LabelsMatched(self.plan.labels, sum(lk.matched for lk in self.lookups))  # type: ignore[arg-type]
        return report


def stream(
    model: str | Path | Segmenter,
    *,
    sinks: Sequence[Sink] | Callable[[str], Any] = (),
    max_frames: int | None = None,
    reconnect: Reconnect | None = None,
    options: BackendOptions | None = None,
    workers: int | None = None,
    sources: Sequence[StreamSpec] | None = None,
    **source: Any,
) -> Iterator[FrameResult]:
    """One-call streaming for embedding: `for r in stream("m.onnx", camera=0): r.class_map`.

    Workers are planned as for `edgeseg run` (None: two for a file on a CPU, ONNX Runtime or OpenVINO, else one);
    `options` opens the model (BackendOptions, as RunPlan and open_pipeline take them; its
    `input_size=(h, w)` or `"native"` runs a --dynamic-hw model at another size, as `run --input-size`).
    `sources=[{"camera": 0}, {"video": "a.mp4"}]` (or Source objects) runs several streams through
    the model with batched inference; `r.stream` names each result's stream and `sinks`, if given, is
    a function of that name. The other keywords (loop, synthetic_size, ...) apply to every stream."""
    if sources is not None:
        if workers not in (None, 1):
            raise EdgesegError("several streams share one batched inference worker; leave workers unset")
        opened = tuple(open_sources(sources, **source))
    else:
        opened = (open_source(**source),)
    plan = RunPlan(
        model=model,
        sources=opened,
        sinks=sinks or (),
        backend_options=given_options(options),
        workers=workers,
        max_frames=max_frames,
        reconnect=reconnect or Reconnect(),
    )
    yield from plan.open().driver.stream()
