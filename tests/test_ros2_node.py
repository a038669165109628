"""The ROS 2 node: its rclpy wiring against the fake in tests/fake_rclpy (rclpy cannot be installed
here; the fake follows rclpy's API and failure modes, each cited there), its messages built from
rosbags' real definitions, its inference on the pipeline's threads with the real ONNX Runtime."""

from __future__ import annotations

import _thread
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from bagfiles import EPOCH, camera_frames  # noqa: E402
from fake_rclpy import messages as ros_msgs  # noqa: E402
from fake_rclpy.install import hide_rclpy, install_rclpy  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402
from edgeseg.errors import EdgesegError, MissingDependencyError  # noqa: E402
from edgeseg.runtime import BackendOptions, Segmenter  # noqa: E402
from edgeseg.runtime.ros2node import NodeOptions, rclpy_kit, run_node  # noqa: E402

runner = CliRunner()


def image_msg(bgr: np.ndarray, k: int, frame_id: str = "front_camera") -> object:
    """What a camera driver publishes (rgb8, as many USB drivers do), built with the ROS classes."""
    h, w = bgr.shape[:2]
    stamp = EPOCH + k * 50_000_000
    header = ros_msgs.Header(
        stamp=ros_msgs.Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id
    )
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return ros_msgs.Image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                          data=list(rgb.reshape(-1).tolist()))  # fmt: skip


def compressed_msg(bgr: np.ndarray, k: int) -> object:
    stamp = EPOCH + k * 50_000_000
    header = ros_msgs.Header(stamp=ros_msgs.Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam")
    ok, png = cv2.imencode(".png", bgr)
    return ros_msgs.CompressedImage(header=header, format="png", data=png.reshape(-1).tolist())


def pixels(msg: object) -> np.ndarray:
    data = np.frombuffer(msg.data, np.uint8)
    return (
        data.reshape(msg.height, msg.width, -1).squeeze(-1)
        if msg.encoding == "mono8"
        else data.reshape(msg.height, msg.width, 3)
    )


def lockstep_camera(graph, topic: str, msgs: list, *, out: str = "/edgeseg/class_map", timeout: float = 30):
    """A camera that sends the next frame once the node has published the previous result."""

    def run():
        deadline = time.monotonic() + timeout
        while not any(s.topic_name == topic for s in graph.subscriptions):
            time.sleep(0.01)
        for k, msg in enumerate(msgs):
            graph.camera(topic, msg)
            while len(graph.published[out]) <= k and time.monotonic() < deadline:
                time.sleep(0.005)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.fixture
def ros(monkeypatch):
    graph, rclpy = install_rclpy(monkeypatch)
    return graph, rclpy


def test_node_publishes_class_maps_overlays_and_stats_with_the_camera_headers(ros, tiny_onnx):
    graph, rclpy = ros
    frames = camera_frames(3)
    seg = Segmenter(tiny_onnx())
    lockstep_camera(graph, "/camera/image_raw", [image_msg(f, k) for k, f in enumerate(frames)])
    subs = []
    report = run_node(
        seg,
        NodeOptions(topic="/camera/image_raw", max_frames=3),
        on_ready=lambda node: subs.extend(node._subscriptions),
    ).to_dict()  # the JSON form `edgeseg ros2 --json` prints
    assert report["stopped_by"] == "frames" and report["frames"]["processed"] == 3
    assert report["source"]["kind"] == "ros2" and report["topic"] == "/camera/image_raw"
    (sub,) = subs
    assert sub.qos_profile.depth == 1 and sub.qos_profile.reliability.name == "BEST_EFFORT"
    assert sorted(graph.published) == ["/edgeseg/class_map", "/edgeseg/overlay", "/edgeseg/stats"]
    for k, frame in enumerate(frames):
        cls = graph.published["/edgeseg/class_map"][k]
        assert cls.encoding == "mono8" and cls.header.frame_id == "front_camera"
        assert cls.header.stamp.sec * 10**9 + cls.header.stamp.nanosec == EPOCH + k * 50_000_000
        np.testing.assert_array_equal(pixels(cls), seg.infer(frame))
        overlay = graph.published["/edgeseg/overlay"][k]
        assert overlay.encoding == "bgr8"
        assert np.abs(pixels(overlay).astype(int) - seg.overlay(frame, seg.infer(frame))).max() <= 1
        rec = json.loads(graph.published["/edgeseg/stats"][k].data)
        assert (
            rec["index"] == k
            and rec["stamp_ns"] == EPOCH + k * 50_000_000
            and rec["frame_id"] == "front_camera"
        )
        assert rec["latency_ms"] > 0 and sum(rec["class_pixels"].values()) == frame.shape[0] * frame.shape[1]
    assert not rclpy.ok()  # shut down on the way out; init works again
    rclpy.init()
    rclpy.shutdown()


def test_compressed_topics_and_mask_mode(ros, tiny_onnx):
    graph, _ = ros
    frames = camera_frames(2)
    seg = Segmenter(tiny_onnx())
    topic = "/camera/image_raw/compressed"
    lockstep_camera(graph, topic, [compressed_msg(f, k) for k, f in enumerate(frames)], out="/seg/class_map")
    report = run_node(seg, NodeOptions(topic=topic, max_frames=2, visual="mask", node_name="seg")).to_dict()
    assert report["frames"]["processed"] == 2
    for k, frame in enumerate(frames):
        np.testing.assert_array_equal(pixels(graph.published["/seg/class_map"][k]), seg.infer(frame))
        np.testing.assert_array_equal(
            pixels(graph.published["/seg/overlay"][k]), seg.colorize(seg.infer(frame))
        )


def test_inference_runs_off_the_executor_thread_and_keeps_only_the_newest_frame(ros, tiny_onnx):
    """A model slower than the camera: the callbacks keep up (every message is taken at once), the
    waiting message is replaced by newer ones, and each message is either processed or dropped."""
    graph, _ = ros
    seg = Segmenter(tiny_onnx(), BackendOptions(backend="onnxruntime"))  # its submit_impl() calls run_impl()
    infer_threads, run = set(), seg.backend.run_impl

    def slow_run(batch):
        infer_threads.add(threading.get_ident())
        time.sleep(0.25)
        return run(batch)

    seg.backend.run_impl = slow_run
    frames = camera_frames(12)

    def camera():
        while not graph.subscriptions:
            time.sleep(0.01)
        for k, f in enumerate(frames):
            graph.camera("/image", image_msg(f, k))
            time.sleep(0.03)

    threading.Thread(target=camera, daemon=True).start()
    report = run_node(seg, NodeOptions(topic="image", timeout=1.5, visual="none")).to_dict()
    assert threading.get_ident() not in infer_threads and len(infer_threads) == 1
    assert report["source"]["received"] == 12  # the middleware keeps 1 per subscription: none lost there
    processed, dropped = report["frames"]["processed"], report["frames"]["dropped"]
    assert 2 <= processed < 12 and processed + dropped == 12
    last = graph.published["/edgeseg/class_map"][-1]
    assert last.header.stamp.sec * 10**9 + last.header.stamp.nanosec == EPOCH + 11 * 50_000_000  # the newest
    assert report["stopped_by"] == "timeout" and "/edgeseg/overlay" not in graph.published


def test_reliable_subscription_hears_nothing_from_a_best_effort_camera(ros, tiny_onnx):
    graph, _ = ros
    frames = camera_frames(1)

    def camera(reliability):
        while not graph.subscriptions:
            time.sleep(0.01)
        graph.camera("/image", image_msg(frames[0], 0), reliability=reliability)

    qos = sys.modules["rclpy.qos"]
    threading.Thread(target=camera, args=(qos.ReliabilityPolicy.BEST_EFFORT,), daemon=True).start()
    report = run_node(Segmenter(tiny_onnx()), NodeOptions(reliable=True, timeout=0.5)).to_dict()
    assert report["frames"]["processed"] == 0 and report["stopped_by"] == "timeout"
    threading.Thread(target=camera, args=(qos.ReliabilityPolicy.RELIABLE,), daemon=True).start()
    report = run_node(Segmenter(tiny_onnx()), NodeOptions(reliable=True, max_frames=1, timeout=5)).to_dict()
    assert report["frames"]["processed"] == 1


def test_ctrl_c_during_spin_stops_and_releases_everything(ros, tiny_onnx):
    graph, rclpy = ros
    frames = camera_frames(2)
    nodes = []

    def camera():
        while not graph.subscriptions:
            time.sleep(0.01)
        graph.camera("/image", image_msg(frames[0], 0))
        while not graph.published["/edgeseg/stats"]:
            time.sleep(0.005)
        _thread.interrupt_main()  # Ctrl-C: KeyboardInterrupt in the spinning thread

    threading.Thread(target=camera, daemon=True).start()
    report = run_node(Segmenter(tiny_onnx()), NodeOptions(), on_ready=nodes.append).to_dict()
    assert (
        report["stopped_by"] == "interrupt" and report["interrupted"] and report["frames"]["processed"] == 1
    )
    (node,) = nodes
    assert not rclpy.ok() and not graph.subscriptions
    with pytest.raises(RuntimeError, match="destruction was requested"):
        node.create_publisher(ros_msgs.String, "x", 1)


def test_ros_shutdown_from_outside_ends_the_node(ros, tiny_onnx):
    graph, rclpy = ros

    def launch_system_stops():
        while not graph.subscriptions:
            time.sleep(0.01)
        rclpy.shutdown()

    threading.Thread(target=launch_system_stops, daemon=True).start()
    report = run_node(Segmenter(tiny_onnx()), NodeOptions()).to_dict()
    assert report["stopped_by"] == "shutdown" and report["frames"]["processed"] == 0


def test_a_handler_left_by_a_shutdown_from_another_thread_is_put_back_after_the_test(ros):
    """rclpy.shutdown() from a launch thread cannot uninstall rclpy's SIGTERM handler (only the main thread
    may set handlers), so the fake leaves it; conftest's fixture puts the previous one back."""
    from conftest import kept_signal_handlers

    _, rclpy = ros
    before = signal.getsignal(signal.SIGTERM)
    with kept_signal_handlers():
        rclpy.init()
        assert signal.getsignal(signal.SIGTERM).__name__ == "_shutdown_all_contexts"
        launch = threading.Thread(target=rclpy.shutdown)
        launch.start()
        launch.join()
        assert not rclpy.ok()
        assert signal.getsignal(signal.SIGTERM).__name__ == "_shutdown_all_contexts"  # left behind
    assert signal.getsignal(signal.SIGTERM) is before


def test_bad_names_and_a_missing_ros_are_one_line(ros, tiny_onnx, monkeypatch):
    seg = Segmenter(tiny_onnx())
    for options, needle in (
        (dict(topic="camera image"), "topic name must not contain characters other than alphanumerics"),
        (dict(topic="/camera/2d"), "topic name token must not start with a number"),
        (dict(node_name="2nd-node"), "node name must not contain characters"),
        (dict(visual="heatmap"), "unknown visual 'heatmap'"),  # refused when the options are made
    ):
        with pytest.raises(EdgesegError, match=needle) as err:
            run_node(seg, NodeOptions(**options))
        assert "\n" not in str(err.value)
        assert not sys.modules["rclpy"].ok()  # shut down again after the failure
    graph = ros[0]
    depth = image_msg(camera_frames(1)[0], 0)
    depth.encoding = "32FC1"

    def camera():
        while not graph.subscriptions:
            time.sleep(0.01)
        graph.camera("/image", depth)

    threading.Thread(target=camera, daemon=True).start()
    with pytest.raises(EdgesegError, match="/image: image encoding '32FC1' is not supported"):
        run_node(seg, NodeOptions(timeout=10))
    assert not sys.modules["rclpy"].ok() and not graph.subscriptions
    hide_rclpy(monkeypatch)
    with pytest.raises(MissingDependencyError, match=r"source /opt/ros/<distro>/setup.bash"):
        run_node(seg, NodeOptions())


def test_cli_runs_the_node_and_passes_ros_arguments(ros, tiny_onnx, tmp_path):
    graph, rclpy = ros
    seen_args = []
    init = rclpy.init

    def spy_init(*, args=None, **kw):
        seen_args.append(args)
        return init(args=args, **kw)

    rclpy.init = spy_init
    frames = camera_frames(2)
    lockstep_camera(graph, "/front/image", [image_msg(f, k) for k, f in enumerate(frames)])
    r = runner.invoke(app, ["ros2", "--model", str(tiny_onnx()), "--topic", "/front/image", "--frames", "2", "--json",
                            "--report", str(tmp_path / "r.json"), "--ros-args", "-r", "__ns:=/robot"])  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["frames"]["processed"] == 2 and report["artifact"].endswith(".onnx")
    assert json.loads((tmp_path / "r.json").read_text())["frames"]["processed"] == 2
    assert seen_args[0][1:] == ["--ros-args", "-r", "__ns:=/robot"]

    r = runner.invoke(app, ["ros2", "--model", str(tiny_onnx()), "--timeout", "0.3"])
    assert r.exit_code == 5 and "no image on /image for 0.3 s" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["ros2", "--model", str(tiny_onnx()), "--topic", "bad topic"])
    assert r.exit_code == 2 and "Invalid topic name" in r.output and "Traceback" not in r.output


def test_cli_node_on_openvino(ros, tiny_onnx, tmp_path):
    """`edgeseg ros2 --backend openvino`: the node runs the ONNX on OpenVINO (real, from PyPI) and its
    class maps are OpenVINO's own."""
    pytest.importorskip("openvino")
    graph, _ = ros
    frames = camera_frames(2)
    model = tiny_onnx()
    lockstep_camera(graph, "/image", [image_msg(f, k) for k, f in enumerate(frames)])
    r = runner.invoke(
        app, ["ros2", "--model", str(model), "--backend", "openvino", "--frames", "2", "--json"]
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["backend"]["backend"] == "openvino" and report["frames"]["processed"] == 2
    with Segmenter(model, BackendOptions(backend="openvino")) as seg:
        for k, frame in enumerate(frames):
            np.testing.assert_array_equal(pixels(graph.published["/edgeseg/class_map"][k]), seg.infer(frame))


def test_cli_node_runs_a_dynamic_hw_model_at_the_size_asked_for(ros, tiny_onnx):
    """`edgeseg ros2 --input-size HxW` / `--native-size`, as `run` takes them (BackendOptions.input_size):
    the node's model runs camera frames at that size and its report says which."""
    graph, _ = ros
    model = tiny_onnx(dynamic=True)  # N, H, W named; the card states 32x48
    for extra, size in [(["--input-size", "64x96"], [64, 96]), (["--native-size"], "native"), ([], [32, 48])]:
        lockstep_camera(graph, "/image", [image_msg(f, k) for k, f in enumerate(camera_frames(1))])
        r = runner.invoke(app, ["ros2", "--model", str(model), "--frames", "1", "--json", *extra])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["model"]["inference_size"]["size"] == size
    fixed = runner.invoke(app, ["ros2", "--model", str(tiny_onnx()), "--native-size", "--frames", "1"])
    assert fixed.exit_code == 2 and "--native-size needs a model exported with --dynamic-hw" in fixed.output


NODE_UNDER_SUPERVISOR = """
import sys, threading, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from bagfiles import camera_frames
from fake_rclpy import messages
from fake_rclpy.rclpy_fake import FakeGraph, build
graph = FakeGraph()
sys.modules.update({{**build(graph), **messages.modules()}})
from test_ros2_node import image_msg

def camera():  # publishes at 20 Hz; says "running" once the node has published a result
    k = 0
    while True:
        if graph.subscriptions:
            graph.camera("/image", image_msg(camera_frames(1)[0], k))
            k += 1
        if graph.published.get("/edgeseg/stats"):
            Path({ready!r}).touch()
        time.sleep(0.05)

threading.Thread(target=camera, daemon=True).start()
sys.argv = ["edgeseg", "ros2", "--model", {model!r}, "--report", {report!r}]
from edgeseg.cli import main
main()
"""


def test_sigterm_stops_the_cli_node_with_143_and_a_report(tiny_onnx, tmp_path):
    """What systemd or `docker stop` does to `edgeseg ros2`: rclpy's own SIGTERM handler would only
    shut ROS down (a clean exit 0, as if a launch system ended it); edgeseg's contract is 143."""
    ready, report = tmp_path / "running", tmp_path / "report.json"
    script = NODE_UNDER_SUPERVISOR.format(
        tests=str(Path(__file__).parent), ready=str(ready), model=str(tiny_onnx()), report=str(report)
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    written = json.loads(report.read_text())
    assert written["ended"] == {"reason": "stopped by SIGTERM", "exit_code": 143}
    assert written["frames"]["processed"] >= 1


def test_cli_without_ros_is_one_line(monkeypatch, tiny_onnx):
    hide_rclpy(monkeypatch)
    r = runner.invoke(app, ["ros2", "--model", str(tiny_onnx())])
    assert r.exit_code == 2 and "source /opt/ros/<distro>/setup.bash" in " ".join(r.output.split())


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "edgeseg.ros2", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "--topic" in out.stdout and "--reliable" in out.stdout


# --- the messages and the fake itself -------------------------------------------------------------------
def test_rclpy_kit_builds_messages_the_generated_classes_accept(ros):
    kit = rclpy_kit()
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    msg = kit.make_image(labels, EPOCH + 7, "cam")
    assert type(msg) is ros_msgs.Image and msg.data.typecode == "B"
    assert (msg.height, msg.width, msg.step, msg.encoding) == (3, 4, 4, "mono8")
    back = ros_msgs.from_wire(ros_msgs.to_wire(msg), "sensor_msgs/msg/Image")  # through CDR
    np.testing.assert_array_equal(pixels(back), labels)
    wide = kit.make_image(np.array([[1, 700]], np.uint16), EPOCH, "cam")
    assert (
        wide.encoding == "mono16"
        and wide.step == 4
        and bytes(wide.data) == np.array([1, 700], "<u2").tobytes()
    )


def test_the_fake_fails_the_way_rclpy_does(ros):
    graph, rclpy = ros
    node_mod, qos, exc = sys.modules["rclpy.node"], sys.modules["rclpy.qos"], sys.modules["rclpy.exceptions"]
    with pytest.raises(exc.NotInitializedException, match=r"rclpy.init\(\) has not been called"):
        node_mod.Node("early")
    with pytest.raises(RuntimeError, match="Context must be initialized"):
        rclpy.shutdown()
    rclpy.init()
    with pytest.raises(RuntimeError, match="must only be called once"):
        rclpy.init()
    node = rclpy.create_node("n")
    with pytest.raises(qos.InvalidQoSProfileException):
        qos.QoSProfile(reliability=qos.ReliabilityPolicy.RELIABLE)
    with pytest.raises(TypeError, match="Expected QoSProfile or int"):
        node.create_publisher(ros_msgs.String, "s", "depth 1")
    with pytest.raises(AttributeError, match="ROS 2 message type"):
        node.create_publisher(__import__("bagfiles").String, "s", 1)  # a rosbags class has no type support
    pub = node.create_publisher(ros_msgs.String, "s", 1)
    with pytest.raises(TypeError, match="Expected"):
        pub.publish(ros_msgs.Time(sec=1, nanosec=0))
    with pytest.raises(AssertionError, match="set or sequence"):
        ros_msgs.Image(
            header=None,
            height=1,
            width=1,
            encoding="mono8",
            is_bigendian=0,
            step=1,
            data=np.zeros(1, np.uint8),
        )
    node.destroy_node()
    with pytest.raises(RuntimeError, match="destruction was requested"):
        pub.publish(ros_msgs.String(data="late"))
    rclpy.shutdown()
    with pytest.raises(sys.modules["rclpy.executors"].ExternalShutdownException):
        rclpy.spin_once(node, timeout_sec=0)


def test_ros2_passes_allow_other_gpu_to_the_backend(ros, tiny_onnx, monkeypatch):
    """`edgeseg ros2` runs engines like `edgeseg run`, so it takes --allow-other-gpu (the shared option
    definition) and hands it to the backend options."""
    import edgeseg.runtime.segmenter as segmenter

    seen: list[BackendOptions] = []

    class Spy(segmenter.Segmenter):
        def __init__(self, artifact, options):
            seen.append(options)
            raise EdgesegError("stopped before opening the model")

    monkeypatch.setattr(segmenter, "Segmenter", Spy)
    for flag, expected in (([], False), (["--allow-other-gpu"], True)):
        r = runner.invoke(app, ["ros2", "--model", str(tiny_onnx()), *flag])
        assert "stopped before opening the model" in r.output and seen[-1].allow_other_gpu is expected
