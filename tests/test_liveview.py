"""The live view (`edgeseg run --serve`, and `--show` without an OpenCV GUI): a real HTTP server on
127.0.0.1 read by a real HTTP client while a pipeline streams, a real headless Chromium rendering
the page, and the window-or-browser decision for `--show`."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_runtime import write_video
from typer.testing import CliRunner

from edgeseg.cli import app
from edgeseg.errors import EdgesegError
from edgeseg.runtime import Pipeline, Segmenter, open_source
from edgeseg.runtime.backends import BackendOptions
from edgeseg.runtime.draw import Renderer
from edgeseg.runtime.liveserver import BOUNDARY, parse_address
from edgeseg.runtime.sinks import LiveViewSink, ViewPlan, opencv_gui, plan_view

SYNTH_CLASSES = 8  # the synthetic source scores against its 8 street classes
FRAME_HW = (96, 160)


def get(url: str, timeout: float = 10.0) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers["Content-Type"], r.read()


def read_mjpeg_parts(url: str, count: int, timeout: float = 20.0) -> list[bytes]:
    """The first `count` JPEG parts of a multipart/x-mixed-replace stream, parsed by hand (boundary
    line, part headers, Content-Length bytes) as a browser does."""
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/stream.mjpg")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        parts = []
        while len(parts) < count:
            line = resp.fp.readline().strip()
            if not line:
                continue
            assert line == f"--{BOUNDARY}".encode()
            headers = {}
            while (h := resp.fp.readline().strip()) != b"":
                k, v = h.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            parts.append(resp.fp.read(int(headers["content-length"])))
        return parts
    finally:
        conn.close()


def refused(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return True
    return False


class Streaming:
    """A pipeline streaming the synthetic scenes (with ground truth) at camera pace into a live view
    on a free port, in a background thread, until stopped."""

    def __init__(self, model: Path, **sink_kw) -> None:
        seg = Segmenter(model, BackendOptions(threads=1))
        self.seg = seg
        self.sink = LiveViewSink(renderer=Renderer(seg.palette, seg.classes), title="test run", **sink_kw)
        source = open_source(synthetic=100_000, synthetic_size=FRAME_HW)
        self.pipe = Pipeline(seg, source, [self.sink], realtime=True)
        self.thread = threading.Thread(target=self.pipe.run, daemon=True)

    def __enter__(self) -> Streaming:
        self.thread.start()
        deadline = time.time() + 30
        while self.pipe.stats.processed < 3:
            assert time.time() < deadline and self.thread.is_alive(), "the run did not start streaming"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.pipe.stop()
        self.thread.join(10)
        self.seg.close()


@pytest.fixture
def street_model(tiny_onnx):
    return tiny_onnx(num_classes=SYNTH_CLASSES, size=FRAME_HW, name="street")


# --- addresses ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("8080", ("127.0.0.1", 8080)),
        (":8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)
def test_serve_addresses_default_to_localhost(spec, expected):
    assert parse_address(spec) == expected


@pytest.mark.parametrize("spec", ["", "http", ":", "host:port", ":70000", "1.2.3.4:-1"])
def test_bad_serve_address_is_one_clear_error(spec):
    with pytest.raises(EdgesegError, match="--serve expects PORT, :PORT or HOST:PORT"):
        parse_address(spec)


# --- the server, read by an HTTP client while a run streams -------------------------------------------
def test_page_stats_and_mjpeg_while_streaming(street_model):
    with Streaming(street_model, address=":0") as run:
        url = run.sink.url
        assert run.sink.server.host == "127.0.0.1"  # nothing wider unless asked
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)

        status, ctype, body = get(url)
        page = body.decode()
        assert status == 200 and ctype.startswith("text/html")
        assert "test run" in page and "stats.json" in page and "stream.mjpg" in page

        status, ctype, body = get(url + "stats.json")
        stats = json.loads(body)
        assert status == 200 and ctype == "application/json" and stats["running"] is True
        assert stats["frames"]["processed"] >= 3 and stats["fps"] > 0
        assert stats["latency_ms"]["p50"] > 0 and stats["latency_ms"]["p99"] >= stats["latency_ms"]["p50"]
        assert stats["frame"]["size"] == list(FRAME_HW)
        assert 0.0 <= stats["miou"] <= 1.0  # the synthetic scenes carry ground truth
        shares = stats["class_share"]
        assert [c["name"] for c in shares] == run.seg.classes
        assert sum(c["share"] for c in shares) == pytest.approx(1.0)
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c["color"]) for c in shares)

        parts = read_mjpeg_parts(url, 2)
        for jpeg in parts:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (*FRAME_HW, 3)
        assert parts[0] != parts[1]  # two different frames of the moving scene

        later = json.loads(get(url + "stats.json")[2])
        assert later["frames"]["processed"] > stats["frames"]["processed"]  # live, not a snapshot

        _, ctype, jpeg = get(url + "frame.jpg")
        assert ctype == "image/jpeg" and cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1).shape[:2] == FRAME_HW
    assert not run.thread.is_alive()
    assert refused(url)  # the run ended, so did the server
    assert run.pipe.report()["outputs"][0]["sink"] == "live view"


def test_a_client_that_never_reads_does_not_hold_up_the_run(tiny_onnx, tmp_path):
    """A viewer whose socket is full blocks only its own handler thread: every frame is still
    processed, and closing the server ends the stuck stream (the socket reaches EOF)."""
    h, w = 480, 640
    rng = np.random.default_rng(0)
    for i in range(4):  # noise compresses badly: each JPEG is large, so socket buffers fill quickly
        cv2.imwrite(str(tmp_path / f"noise_{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    seg = Segmenter(tiny_onnx(size=(h, w)), BackendOptions(threads=1))
    sink = LiveViewSink(":0", renderer=Renderer(seg.palette, seg.classes))
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect((sink.server.host, sink.server.port))
    client.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read a byte
    pipe = Pipeline(seg, open_source(images=tmp_path, loop=True), [sink], max_frames=200)
    done = threading.Event()
    runner = threading.Thread(target=lambda: (pipe.run(), done.set()), daemon=True)
    runner.start()
    try:
        assert done.wait(60), "the run was held up by a viewer that does not read"
        assert pipe.stats.processed == 200
        assert refused(sink.url)
        client.settimeout(5)
        received = b""
        while chunk := client.recv(1 << 16):  # the server ended the stream: the socket reaches EOF
            received += chunk
        assert received.startswith(b"HTTP/1.1 200")
        # the viewer holds what the socket buffers took (whole frames) and nothing queued for it
        lengths = [int(n) for n in re.findall(rb"Content-Length: (\d+)\r\n\r\n", received)]
        assert 0 < len(lengths) == sink.server.frames_sent < pipe.stats.processed
    finally:
        client.close()
        seg.close()


def test_port_in_use_is_one_clear_line(tiny_onnx):
    model = tiny_onnx(num_classes=SYNTH_CLASSES, size=(32, 64))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["run", "--model", str(model), "--frames", "2", "--serve", f":{port}"])
    finally:
        taken.close()
    assert r.exit_code == 2
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"127.0.0.1:{port}: the port is in use" in lines[0]


def test_cli_serves_prints_the_url_and_stops_cleanly_on_ctrl_c(tiny_onnx, tmp_path):
    """`edgeseg run --serve :0` in its own process: URL on stderr (stdout keeps the JSON report), the
    stats while it streams, and Ctrl-C ends the run with 130 and frees the port."""
    model = tiny_onnx(num_classes=3, size=(50, 70))
    video = tmp_path / "v.mp4"
    write_video(video, 20, size=(50, 70), fps=10)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseg", "run", "--model", str(model), "--video", str(video), "--loop"]
        + ["--realtime", "--serve", ":0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        match = re.fullmatch(r"live view: (http://127\.0\.0\.1:\d+/)\n", line)
        assert match, line
        url = match.group(1)
        deadline = time.time() + 30
        while True:
            stats = json.loads(get(url + "stats.json")[2])
            if stats["frames"]["processed"] >= 2:
                break
            assert time.time() < deadline
            time.sleep(0.1)
        assert stats["frame"]["size"] == [50, 70] and stats["miou"] is None  # no ground truth here
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] and report["outputs"] == [
        {"sink": "live view", "url": url, "frames_streamed": 0}
    ]
    assert "Traceback" not in err
    assert refused(url)


# --- --show: window or browser ------------------------------------------------------------------------
def test_show_opens_a_window_where_opencv_has_a_gui():
    assert plan_view(show=True, serve=None, has_gui=True) == ViewPlan(window=True)
    assert plan_view(show=True, serve=":8080", has_gui=True) == ViewPlan(window=True, serve=":8080")
    assert plan_view(show=False, serve=None) == ViewPlan()
    assert plan_view(show=False, serve="9000") == ViewPlan(serve="9000")


def test_show_without_gui_falls_back_to_the_live_view_in_a_browser():
    plan = plan_view(show=True, serve=None, has_gui=False)
    assert plan.window is False and plan.open_browser is True
    assert parse_address(plan.serve) == ("127.0.0.1", 0)  # local only, any free port
    assert "no GUI" in plan.note and "web browser" in plan.note
    wide = plan_view(show=True, serve="0.0.0.0:8080", has_gui=False)
    assert wide.serve == "0.0.0.0:8080" and wide.open_browser


@pytest.mark.skipif(opencv_gui() is not None, reason="this OpenCV has a GUI: --show opens a window")
def test_show_with_headless_opencv_opens_the_browser(tiny_onnx, monkeypatch):
    """The installed pip opencv-python-headless has no GUI: `--show` serves and opens a browser."""
    import webbrowser

    opened: list[str] = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(webbrowser, "open", lambda url, new=0: opened.append(url) or True)
    model = tiny_onnx(num_classes=SYNTH_CLASSES, size=(32, 64))
    r = CliRunner().invoke(app, ["run", "--model", str(model), "--frames", "3", "--show", "--json"])
    assert r.exit_code == 0, r.output
    assert "this OpenCV has no GUI (pip's opencv-python-headless)" in r.stderr
    # the view lives as long as the run: a short run says how to keep it up long enough to watch
    assert "for as long as the run lasts" in r.stderr and "--realtime" in r.stderr
    url = re.search(r"live view: (http://127\.0\.0\.1:\d+/)", r.stderr).group(1)
    assert opened == [url]
    assert json.loads(r.stdout)["outputs"][0]["url"] == url


def test_no_display_prints_the_url_instead_of_starting_a_text_browser(monkeypatch):
    import webbrowser

    from edgeseg.runtime.sinks import open_in_browser

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(webbrowser, "open", lambda *a, **k: pytest.fail("would start a text browser"))
    if sys.platform.startswith("linux"):
        assert open_in_browser("http://127.0.0.1:1/") is False


@pytest.mark.parametrize(
    "info, gui",
    [
        ("  GUI:                           NONE\n", None),  # pip's opencv-python-headless 4.6+
        (
            "  GUI:                           QT5\n    QT:                          YES (ver 5.15.13 )\n",
            "QT5",
        ),
        ("  GUI: \n    GTK+:                        YES (ver 3.24.20)\n      GThread :     YES\n\n", "GTK+"),
        ("  GUI: \n    GTK+:                        NO\n\n  Media I/O: \n", None),
        ("  Video I/O:\n    FFMPEG:                      YES\n", None),
    ],
)
def test_opencv_gui_reads_both_build_information_layouts(info, gui):
    """OpenCV 4.6+ names the backend on the `GUI:` line; 4.5 (JetPack 5) lists toolkits under an
    empty `GUI:` (the status lines of OpenCV's CMakeLists.txt)."""
    assert opencv_gui(info) == gui


# --- a real browser ------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    env = {**os.environ, "HOME": os.environ.get("TMPDIR", "/tmp")}  # a profile it may write
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_headless_chromium_renders_the_stats_and_the_stream(street_model, tmp_path):
    shot = tmp_path / "liveview.png"
    with Streaming(street_model, address="127.0.0.1:0") as run:
        budget = "--virtual-time-budget=3000"  # lets the page's own timers poll stats.json
        dom = chromium(budget, "--dump-dom", run.sink.url)
        png = chromium(budget, "--window-size=1000,600", f"--screenshot={shot}", run.sink.url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert png.returncode == 0 and shot.is_file(), png.stderr[-2000:]
    html = dom.stdout
    assert re.search(r'id="state">streaming, frame \d+<', html), "the page never showed stats"
    assert re.search(r'id="fps">\d+\.\d<', html)
    assert re.search(r'id="miou">0\.\d{3}<', html)
    for p in ("p50", "p95", "p99"):
        assert re.search(rf'id="latency_{p}">\d+\.\d ms<', html)
    for name in run.seg.classes:
        assert f"<span>{name}</span>" in html
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (600, 1000)
    background = np.array([0x1C, 0x18, 0x15])  # the page's #15181c, BGR
    view = image[60:200, 16:176]  # where the stream's 96x160 image sits, under the header
    assert (np.abs(view.astype(int) - background).sum(axis=2) > 30).mean() > 0.9, "no video frame shown"
