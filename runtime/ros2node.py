"""A ROS 2 node over the streaming runtime: subscribe to a camera topic, publish the class map
(mono8), an overlay or colour mask (bgr8) and a per-frame stats record, with the backends, the
latest-frame policy and the statistics of `edgeseg run`.

rclpy comes with a ROS 2 installation (`source /opt/ros/humble/setup.bash`), never from pip, so it
is imported when the node starts; message conversion is `rosmsg`, shared with the bag code.

Threads: the subscription callback runs on the executor's thread (ours: the caller's, inside
`rclpy.spin_once`) and only parks the message in a one-slot mailbox, where a newer message replaces
a waiting one (counted as dropped), so a slow model never blocks the executor. The pipeline's
capture thread takes the newest message from there and its stages convert, infer, draw and publish
on their own threads, exactly as for a camera.

QoS: the subscription keeps the last message only (KEEP_LAST, depth 1), best effort by default:
a best-effort reader matches both best-effort camera drivers (sensor-data QoS) and reliable ones,
while a reliable reader gets nothing from a best-effort writer. The publishers are reliable with
depth 1, which every subscriber, reliable or best effort, can match.
"""

from __future__ import annotations

import array
import importlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.runtime.draw import MODES
from edgeseg.runtime.pipeline import FrameResult, Pipeline
from edgeseg.runtime.plan import RunPlan, View
from edgeseg.runtime.report import NodeEnd, RunReport
from edgeseg.runtime.rosmsg import MessageKit, image_from_msg, stamp_ns
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.sources import Frame, Source
from edgeseg.signals import signal_name

CLASS_MAP_TOPIC = "~/class_map"  # private names: /edgeseg/class_map etc. for a node named edgeseg
VISUAL_TOPIC = "~/overlay"
STATS_TOPIC = "~/stats"
VISUALS = (*MODES, "none")
SPIN_SLICE = 0.1  # seconds per spin_once: how quickly the node notices the end of the stream


def _ros_import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not importable ({exc}); the ROS 2 node needs a ROS 2 installation in this "
            "shell: source /opt/ros/<distro>/setup.bash (rclpy and the message packages do not come from pip)"
        ) from None


def rclpy_kit() -> MessageKit:
    """The message classes of the sourced ROS 2; `uint8[]` as array.array('B'), which the generated
    classes store without checking every byte in Python (a NumPy array is refused by their setter)."""
    sensor, std, builtin = (
        _ros_import(m) for m in ("sensor_msgs.msg", "std_msgs.msg", "builtin_interfaces.msg")
    )
    return MessageKit(
        image=sensor.Image,
        compressed_image=sensor.CompressedImage,
        header=std.Header,
        time=builtin.Time,
        string=std.String,
        byte_array=lambda a: array.array("B", np.ascontiguousarray(a).tobytes()),
    )


class TopicSource(Source):
    """The newest message of an image topic; `deliver` is the subscription callback."""

    kind = "ros2"
    live = True

    def __init__(self, topic: str, *, timeout: float | None = None) -> None:
        self.topic = topic
        self.timeout = timeout
        self.received = 0
        self.timed_out = False
        self._waiting: tuple[Any, float] | None = None
        self._cond = threading.Condition()
        self._interrupted = False
        self._stem = topic.strip("/~").replace("/", "_") or "image"
        self.index = 0

    def deliver(self, msg: Any) -> None:
        """O(1), never blocks: park the message, replacing (and counting) one still waiting."""
        now = time.perf_counter()
        with self._cond:
            if self._waiting is not None:
                self.dropped += 1
            self._waiting = (msg, now)
            self.received += 1
            self._cond.notify()

    def open(self) -> None:
        with self._cond:
            self._interrupted = False
            self.timed_out = False

    def interrupt(self) -> None:
        """Wake a waiting `read()`, which then returns None (the node is stopping)."""
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def read(self) -> Frame | None:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        with self._cond:
            while self._waiting is None and not self._interrupted:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.timed_out = True
                    return None
                self._cond.wait(0.1 if left is None else min(0.1, left))
            if self._waiting is None:
                return None
            (msg, received), self._waiting = self._waiting, None
        try:
            image = image_from_msg(msg)
        except EdgesegError as exc:
            raise EdgesegError(f"{self.topic}: {exc}") from None
        frame = Frame(image, f"{self._stem}_{self.index:06d}", stamp_ns=stamp_ns(msg.header),
                      frame_id=str(msg.header.frame_id), received=received)  # fmt: skip
        self.index += 1
        return frame

    def close(self) -> None:
        self.interrupt()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "topic": self.topic, "received": self.received,
                "dropped_before_capture": self.dropped}  # fmt: skip


class ResultPublisher(Sink):
    """Publishes the class map, and the rendering when `visual` is set, with the input's header."""

    def __init__(self, kit: MessageKit, class_map: Any, visual: Any | None = None) -> None:
        self.kit, self.class_map, self.visual = kit, class_map, visual
        self.needs_render = visual is not None
        self.published = 0

    def write(self, result: FrameResult) -> None:
        assert result.class_map is not None
        stamp = result.stamp_ns or 0
        self.class_map.publish(self.kit.make_image(result.class_map, stamp, result.frame_id))
        if self.visual is not None:
            assert result.rendered is not None
            self.visual.publish(self.kit.make_image(result.rendered, stamp, result.frame_id))
        self.published += 1

    def describe(self) -> dict[str, Any]:
        topics = [self.class_map.topic_name, *([self.visual.topic_name] if self.visual is not None else [])]
        return {"sink": "ros2", "topics": topics, "frames": self.published}


class StatsPublisher(Sink):
    """Publishes each frame's record (the `--log` JSON line) as std_msgs/String once timings are final."""

    records = True
    needs_class_map = False

    def __init__(self, kit: MessageKit, publisher: Any, classes: list[str]) -> None:
        self.kit, self.publisher, self.classes = kit, publisher, classes

    def write(self, result: FrameResult) -> None:
        self.publisher.publish(self.kit.make_string(json.dumps(result.to_record(self.classes))))

    def describe(self) -> dict[str, Any]:
        return {"sink": "ros2-stats", "topic": self.publisher.topic_name}


@dataclass(frozen=True)
class NodeOptions:
    """How the node subscribes and what it publishes; checked when made (one clear line)."""

    topic: str = "image"
    compressed: bool | None = None  # None: CompressedImage when the topic ends in /compressed
    reliable: bool = False
    visual: str = "overlay"  # overlay, mask, side-by-side or none
    alpha: float = 0.5
    node_name: str = "edgeseg"
    max_frames: int | None = None
    timeout: float | None = None  # end (as a lost camera) after this long without a message
    status_every: float = 5.0  # seconds between status lines in the node's log

    def __post_init__(self) -> None:
        if self.visual not in VISUALS:
            raise EdgesegError(f"unknown visual {self.visual!r}; choose one of {', '.join(VISUALS)}")
        if self.timeout is not None and self.timeout <= 0:
            raise EdgesegError("--timeout must be positive")
        if self.max_frames is not None and self.max_frames < 1:
            raise EdgesegError("--frames must be at least 1")

    @property
    def is_compressed(self) -> bool:
        return self.topic.rstrip("/").endswith("/compressed") if self.compressed is None else self.compressed


def _rclpy_error(exc: BaseException) -> EdgesegError:
    """rclpy's name and QoS errors span several lines; one line for the user."""
    return EdgesegError(" ".join(str(exc).split()))


def run_node(
    segmenter: Segmenter,
    options: NodeOptions | None = None,
    *,
    ros_args: list[str] | None = None,
    kit: MessageKit | None = None,
    on_ready: Callable[[Any], None] | None = None,
    own_process: bool = False,
) -> RunReport:
    """Run the node until Ctrl-C, ROS shutdown, `max_frames`, or `timeout`; return the run's report
    (as `Pipeline.run_report()`, with how the node stopped and the topic it read: `report.node`). `on_ready(node)` is called once it subscribes.
    `own_process`: this process owns its threads (the `edgeseg ros2` command; see open_pipeline)."""
    options = options or NodeOptions()
    rclpy = _ros_import("rclpy")
    qos = _ros_import("rclpy.qos")
    shutdown_errors: tuple[type[BaseException], ...] = ()
    executors = _ros_import("rclpy.executors")
    if hasattr(executors, "ExternalShutdownException"):
        shutdown_errors += (executors.ExternalShutdownException,)
    exceptions = _ros_import("rclpy.exceptions")
    # what rclpy raises for a bad name, QoS or message type (rclpy/node.py, qos.py, type_support.py)
    setup_errors = (ValueError, TypeError, RuntimeError, AttributeError, exceptions.NameValidationException,
                    qos.InvalidQoSProfileException)  # fmt: skip
    kit = kit or rclpy_kit()
    card = segmenter.card
    visual = options.visual != "none"

    rclpy.init(args=ros_args, **_signal_options(own_process))
    node = None
    try:
        try:
            node = rclpy.create_node(options.node_name)
            source = TopicSource(options.topic, timeout=options.timeout)
            reliability = (
                qos.ReliabilityPolicy.RELIABLE if options.reliable else qos.ReliabilityPolicy.BEST_EFFORT
            )
            sub_qos = qos.QoSProfile(history=qos.HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability,
                                     durability=qos.DurabilityPolicy.VOLATILE)  # fmt: skip
            pub_qos = qos.QoSProfile(history=qos.HistoryPolicy.KEEP_LAST, depth=1,
                                     reliability=qos.ReliabilityPolicy.RELIABLE)  # fmt: skip
            msg_type = kit.compressed_image if options.is_compressed else kit.image
            publishers = ResultPublisher(
                kit,
                node.create_publisher(kit.image, CLASS_MAP_TOPIC, pub_qos),
                node.create_publisher(kit.image, VISUAL_TOPIC, pub_qos) if visual else None,
            )
            stats_pub = StatsPublisher(
                kit, node.create_publisher(kit.string, STATS_TOPIC, pub_qos), card.classes
            )
            subscription = node.create_subscription(msg_type, options.topic, source.deliver, sub_qos)
        except setup_errors as exc:
            raise _rclpy_error(exc) from None
        source.topic = getattr(subscription, "topic_name", options.topic)
        plan = RunPlan(
            model=segmenter, sources=(source,), sinks=[publishers, stats_pub], own_process=own_process, live=True,
            max_frames=options.max_frames, view=View(mode=options.visual, alpha=options.alpha) if visual else View(),
        )  # fmt: skip
        pipe = plan.open().driver
        assert isinstance(pipe, Pipeline)
        logger = node.get_logger()
        logger.info(
            f"segmenting {source.topic} ({'CompressedImage' if options.is_compressed else 'Image'}, "
            f"{'reliable' if options.reliable else 'best effort'}, depth 1) -> "
            f"{', '.join(publishers.describe()['topics'] + [stats_pub.describe()['topic']])}"
        )
        if on_ready is not None:
            on_ready(node)
        stopped_by = _spin(rclpy, node, pipe, logger, options.status_every, shutdown_errors)
        source.interrupt()
        report = pipe.run_report()
        if source.timed_out:
            stopped_by = "timeout"
        elif stopped_by == "end" and options.max_frames is not None:
            stopped_by = "frames"
        report.node = NodeEnd(stopped_by=stopped_by, topic=source.topic)
        logger.info(pipe.stats.status_line())
        return report
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def _signal_options(own_process: bool) -> dict[str, Any]:
    """In its own process the node keeps edgeseg's signal handling (Ctrl-C exits 130, SIGTERM 143 with
    outputs finalised): rclpy's own SIGTERM handler would only shut ROS down, which ends the run as if
    the launch system had (exit 0). Embedded in someone's program, rclpy's defaults stay."""
    if not own_process:
        return {}
    try:
        from rclpy.signals import SignalHandlerOptions  # Humble and later
    except ImportError:
        return {}
    return {"signal_handler_options": SignalHandlerOptions.NO}


def _spin(rclpy: Any, node: Any, pipe: Pipeline, logger: Any, every: float,
          shutdown_errors: tuple[type[BaseException], ...]) -> str:  # fmt: skip
    """Run callbacks on this thread until the pipeline ends or ROS shuts down; stop the pipeline."""
    stopped_by = "end"
    pipe.start()
    try:
        last = time.monotonic()
        while not pipe.ended:
            if not rclpy.ok():
                stopped_by = "shutdown"
                break
            rclpy.spin_once(node, timeout_sec=SPIN_SLICE)
            if every and time.monotonic() - last >= every:
                logger.info(pipe.stats.status_line())
                last = time.monotonic()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated (edgeseg.signals)
        stopped_by = "interrupt"
        pipe.stats.interrupted = True
        pipe.stats.signal = signal_name(exc)
    except shutdown_errors:  # ROS was shut down from outside while spinning (a launch system)
        stopped_by = "shutdown"
    finally:
        pipe.stop()
        pipe.source.interrupt()  # type: ignore[attr-defined]
        pipe.finish()  # raises the first stage error (a bad message, a failed publish)
    return stopped_by
