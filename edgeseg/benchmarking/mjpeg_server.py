"""A small MJPEG-over-HTTP server, the stand-in for `ffmpeg -f mpjpeg -listen 1` where ffmpeg is not
installed. Run as its own process (`python -m edgeseg.benchmarking.mjpeg_server PORT`), so a test can kill, freeze
(SIGSTOP) and restart it exactly as it does ffmpeg.

It speaks what FFmpeg's mpjpeg muxer writes and its demuxer (used by OpenCV's FFmpeg backend) reads:
`Content-Type: multipart/x-mixed-replace;boundary=...`, then per frame a `--boundary` line, a part
header with `Content-Type: image/jpeg` and `Content-Length`, a blank line and the JPEG bytes
(FFmpeg's libavformat/mpjpeg.c and mpjpegdec.c).
"""

from __future__ import annotations

import argparse
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "edgesegframe"


def frames(width: int, height: int):
    """Endless test pattern: a bright bar moving over a gradient, the frame number in its row."""
    base = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    k = 0
    while True:
        img = cv2.merge([base, np.roll(base, k * 3, axis=1), np.full_like(base, (k * 7) % 255)])
        x = (k * 5) % width
        img[:, x : x + 6] = 255
        ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        yield jpg.tobytes()
        k += 1


class Handler(BaseHTTPRequestHandler):
    fps = 20.0
    size = (160, 120)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        period = 1.0 / self.fps
        due = time.monotonic()
        try:
            for jpg in frames(*self.size):
                part = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n"
                ).encode()
                self.wfile.write(part + jpg + b"\r\n")
                self.wfile.flush()
                due += period
                time.sleep(max(0.0, due - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--fps", type=float, default=20.0)
    args = parser.parse_args()
    Handler.fps = args.fps
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print("listening", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
