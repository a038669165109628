"""Real MJPEG-over-HTTP servers on 127.0.0.1 that a test can kill, freeze (SIGSTOP) and restart:
ffmpeg (`-f mpjpeg -listen 1`, Debian package `ffmpeg`) where it is installed, and always the small
Python server in edgeseg/benchmarking/mjpeg_server.py, so the live-source cases run in CI either way.
Used by tests/test_reliability_live.py and benchmarks/reconnect.py.

Readiness is read from /proc/net/tcp (a LISTEN socket on the port), never by connecting: ffmpeg's
`-listen 1` serves exactly one client, and a probe connection would be that client.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

KINDS = ("python", "ffmpeg")
FPS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tcp_states(port: int) -> set[str]:
    """TCP states of sockets on 127.0.0.1:`port`, local or remote side (0A = LISTEN, 01 = ESTABLISHED)."""
    states = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if local.endswith(f":{port:04X}") or remote.endswith(f":{port:04X}"):
            states.add(state)
    return states


class StreamServer:
    """One stream server process at `url`; `start()` again after `kill()` restarts it on the same port."""

    def __init__(self, kind: str, port: int | None = None) -> None:
        self.kind = kind
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        if self.kind == "ffmpeg":
            return [
                "ffmpeg", "-hide_banner", "-loglevel", "quiet", "-re", "-f", "lavfi",
                "-i", f"testsrc=size=160x120:rate={FPS}", "-f", "mpjpeg", "-q:v", "5",
                "-listen", "1", self.url,
            ]  # fmt: skip
        return [sys.executable, "-m", "edgeseg.benchmarking.mjpeg_server", str(self.port), "--fps", str(FPS)]

    def start(self, timeout: float = 15.0) -> StreamServer:
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        # listening, or already serving: a client that keeps retrying (a run with --reconnect) can be
        # accepted before a poll sees the listening socket, which ffmpeg's -listen 1 then closes
        while not {"0A", "01"} & _tcp_states(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} stream server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def wait_for_client(self, timeout: float = 60.0) -> None:
        """Until a client (the run under test) is connected."""
        deadline = time.monotonic() + timeout
        while "01" not in _tcp_states(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("no client connected to the stream server")
            time.sleep(0.05)

    def freeze(self) -> None:
        """The server stops sending; its connection stays open (what a hung camera or encoder does)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL also ends a stopped process
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.kill()
