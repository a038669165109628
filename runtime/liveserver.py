"""A small HTTP server for watching a run on a machine without a display: the annotated stream as
MJPEG (`/stream.mjpg`), the newest frame (`/frame.jpg`), live numbers (`/stats.json`) and a page
that shows both (`/`). Standard library only (http.server), torch-free.

It must never slow the pipeline: the output thread only hands over a reference to its newest result
(`LiveFeed.publish`, a pointer swap under a lock). Drawing and JPEG encoding happen on the client's
own handler thread, once per frame however many clients watch, and a client that reads slowly gets
the newest frame when it is ready for one, never a queue of old ones. Listens on 127.0.0.1 unless
given a wider address.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.errors import EdgesegError

DEFAULT_HOST = "127.0.0.1"
JPEG_QUALITY = 80
MAX_STREAM_FPS = 30.0  # a viewer needs no more; caps the encoding work a fast client can cause
BOUNDARY = "edgeseg-frame"
CLIENT_TIMEOUT = 10.0  # seconds a stalled client may block its own handler thread


def parse_address(spec: str) -> tuple[str, int]:
    """`--serve` values: `8080` or `:8080` (127.0.0.1), `HOST:8080`, `[::1]:8080`; port 0 = any free."""
    text = spec.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (host and not host.strip()):
        raise EdgesegError(f"--serve expects PORT, :PORT or HOST:PORT (e.g. :8080), got {spec!r}")
    return host or DEFAULT_HOST, int(port)


class LiveFeed:
    """The newest frame for any number of viewers; `publish` never waits for them.

    `draw(result)` turns a published result into the BGR image to show; it runs on a viewer's
    thread, and only for frames that a viewer actually fetches.
    """

    def __init__(self, draw: Callable[[Any], np.ndarray], quality: int = JPEG_QUALITY) -> None:
        self.draw = draw
        self.quality = quality
        self.closed = False
        self._latest: Any = None
        self._seq = 0
        self._cond = threading.Condition()
        self._encode_lock = threading.Lock()  # one encode per frame, outside `_cond`
        self._jpeg: tuple[int, bytes] | None = None

    def publish(self, result: Any) -> None:
        with self._cond:
            self._latest = result
            self._seq += 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def jpeg(self, after: int = 0, timeout: float = 0.5) -> tuple[int, bytes] | None:
        """The newest frame newer than sequence number `after` as JPEG, waiting up to `timeout` s for
        one; None when there is none yet or the feed is closed."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self._seq > after, timeout)
            if self.closed or self._seq <= after or self._latest is None:
                return None
            seq, result = self._seq, self._latest
        with self._encode_lock:
            if self._jpeg is None or self._jpeg[0] < seq:
                ok, buf = cv2.imencode(".jpg", self.draw(result), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                if not ok:
                    return None
                self._jpeg = (seq, buf.tobytes())
            return self._jpeg


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() shuts the client sockets itself

    def __init__(self, address: tuple[str, int], live: LiveServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.live = live
        self.clients: set[socket.socket] = set()
        self.clients_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A viewer that goes away mid-frame is normal; nothing to print."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_TIMEOUT
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.server.clients_lock:
            self.server.clients.add(self.connection)

    def finish(self) -> None:
        with self.server.clients_lock:
            self.server.clients.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No access log on the run's stderr."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        live = self.server.live
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", live.page())
            elif path == "/stats.json":
                body = json.dumps(live.stats(), allow_nan=False, default=_jsonable).encode()
                self._send(HTTPStatus.OK, "application/json", body)
            elif path == "/frame.jpg":
                frame = live.feed.jpeg(after=0, timeout=2.0)
                if frame is None:
                    self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
                else:
                    self._send(HTTPStatus.OK, "image/jpeg", frame[1])
            elif path == "/stream.mjpg":
                self._stream(live)
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, live: LiveServer) -> None:
        """multipart/x-mixed-replace: each part replaces the previous image in the browser."""
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        seq, next_due = 0, 0.0
        while not live.feed.closed:
            wait = next_due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            frame = live.feed.jpeg(after=seq)
            if frame is None:
                continue
            seq, jpeg = frame
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            self.wfile.write(head.encode() + jpeg + b"\r\n")
            self.wfile.flush()
            live.frames_sent += 1
            next_due = time.perf_counter() + 1.0 / MAX_STREAM_FPS


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class LiveServer:
    """Binds `host:port` when created (so a port in use fails before a run starts), serves from
    `start()` on a daemon thread, and stops in `close()`, ending every open stream."""

    def __init__(
        self,
        feed: LiveFeed,
        stats: Callable[[], dict[str, Any]],
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        title: str = "edgeseg",
    ) -> None:
        self.feed = feed
        self.stats = stats
        self.title = title
        self.frames_sent = 0
        self._thread: threading.Thread | None = None
        try:
            self._httpd = _Server((host, port), self)
        except socket.gaierror:
            raise EdgesegError(
                f"cannot serve the live view on {host}:{port}: unknown host {host!r}"
            ) from None
        except OSError as exc:
            raise EdgesegError(f"cannot serve the live view on {host}:{port}: {_bind_problem(exc)}") from None
        self.host, self.port = self._httpd.server_address[:2]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def clients(self) -> int:
        with self._httpd.clients_lock:
            return len(self._httpd.clients)

    def page(self) -> bytes:
        html = Path(__file__).with_name("liveview.html").read_text(encoding="utf-8")  # package data beside it
        return html.replace("{{title}}", _html_escape(self.title)).encode()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="edgeseg-liveview"
            )
            self._thread.daemon = True
            self._thread.start()

    def close(self) -> None:
        """Stop serving; safe to call twice. Open streams end, the port is free afterwards."""
        self.feed.close()
        if self._thread is not None:
            self._httpd.shutdown()  # waits for serve_forever to return (one poll interval)
            self._thread.join(1.0)
            self._thread = None
        with self._httpd.clients_lock:
            clients = list(self._httpd.clients)
        for sock in clients:  # a viewer blocked in a write or a keep-alive read ends now
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()


def _bind_problem(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use (choose another with --serve HOST:PORT, or :0 for any free port)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; use e.g. :8080)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address"
    return exc.strerror or str(exc)


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
