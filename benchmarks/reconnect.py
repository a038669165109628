"""Reconnect behaviour of `edgeseg run --url` against a real MJPEG server on 127.0.0.1.

Starts ffmpeg (`-f mpjpeg -listen 1`; with --server python the stand-in tests/mjpeg_server.py),
runs `edgeseg run` on it as a subprocess, and breaks the stream the ways a robot's camera breaks:
killed, frozen (SIGSTOP: the connection stays open, nothing arrives), started late. Prints, per
scenario, the exit code, the recorded gap and reconnect attempts, and how long the run took to
notice, recover or give up after the fault. The figures are timeouts and backoff, not speed; they
are docs/runtime.md's "measured reconnect behaviour".

    python benchmarks/reconnect.py [--server ffmpeg|python] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FPS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> set[str]:
    """TCP states on the port from /proc/net/tcp (0A listen, 01 established); never connects, since
    ffmpeg's -listen 1 would take a probe connection as its one client."""
    states = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if local.endswith(f":{port:04X}") or remote.endswith(f":{port:04X}"):
            states.add(state)
    return states


class Server:
    def __init__(self, kind: str, port: int) -> None:
        self.kind, self.port, self.proc = kind, port, None
        self.url = f"http://127.0.0.1:{port}/stream.mjpg"

    def start(self) -> None:
        if self.kind == "ffmpeg":
            cmd = ["ffmpeg", "-hide_banner", "-loglevel", "quiet", "-re", "-f", "lavfi", "-i",
                   f"testsrc=size=320x240:rate={FPS}", "-f", "mpjpeg", "-listen", "1", self.url]  # fmt: skip
        else:
            here = Path(__file__).resolve().parent.parent / "tests" / "mjpeg_server.py"
            cmd = [sys.executable, str(here), str(self.port), "--fps", str(FPS)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while "0A" not in listening(self.port):
            time.sleep(0.02)

    def wait_client(self) -> None:
        while "01" not in listening(self.port):
            time.sleep(0.02)

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def scenario(name: str, kind: str, run_args: list[str], fault) -> dict:
    port = free_port()
    server = Server(kind, port)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "edgeseg", "run", "--url", server.url, "--threads", "1",
               "--report", str(report), *run_args]  # fmt: skip
        try:
            t_fault = fault(
                server, lambda: subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )
            proc = fault.proc
            proc.wait(120)
            t_end = time.monotonic()
        finally:
            server.kill()
        data = json.loads(report.read_text()) if report.exists() else {}
    gap = (data.get("gaps") or [{}])[0]
    return {
        "scenario": name,
        "command": "edgeseg run --url URL " + " ".join(run_args),
        "exit_code": proc.returncode,
        "gap_start_s": gap.get("start_s"),
        "gap_s": gap.get("duration_s"),
        "attempts": gap.get("reconnect_attempts"),
        "recovered": gap.get("recovered"),
        "fault_to_exit_s": round(t_end - t_fault, 1),
        "reason": data.get("ended", {}).get("reason"),
    }


class Fault:
    """Start the run, then break the server; returns the monotonic time of the fault."""

    def __init__(self, action: str, after: float = 1.0, back_after: float | None = None) -> None:
        self.action, self.after, self.back_after, self.proc = action, after, back_after, None

    def __call__(self, server: Server, launch) -> float:
        if self.action == "late":
            self.proc = launch()
            t = time.monotonic()
            time.sleep(self.after)
            server.start()
            return t
        server.start()
        self.proc = launch()
        server.wait_client()
        time.sleep(self.after)
        t = time.monotonic()
        server.freeze() if self.action == "freeze" else server.kill()
        if self.back_after is not None:
            time.sleep(self.back_after)
            server.kill()
            server.start()
        return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--server", choices=("ffmpeg", "python"), default="ffmpeg" if shutil.which("ffmpeg") else "python"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    k = args.server
    rows = [
        scenario("killed, no --reconnect", k, [], Fault("kill")),
        scenario("frozen, no --reconnect", k, [], Fault("freeze")),
        scenario(
            "frozen for good, --reconnect-timeout 5",
            k,
            ["--reconnect", "--reconnect-timeout", "5"],
            Fault("freeze"),
        ),  # fmt: skip
        scenario(
            "killed for good, --reconnect-timeout 10",
            k,
            ["--reconnect", "--reconnect-timeout", "10"],
            Fault("kill"),
        ),  # fmt: skip
        scenario(
            "killed, back after 3 s", k, ["--reconnect", "--frames", "100"], Fault("kill", back_after=3.0)
        ),
        scenario(
            "frozen, back after 3 s", k, ["--reconnect", "--frames", "100"], Fault("freeze", back_after=3.0)
        ),
        scenario("server up 3 s late", k, ["--reconnect", "--frames", "20"], Fault("late", after=3.0)),
    ]
    if args.json:
        print(json.dumps({"server": k, "rows": rows}, indent=2))
        return 0
    cols = ["scenario", "exit_code", "gap_start_s", "gap_s", "attempts", "recovered", "fault_to_exit_s"]
    print(f"server: {k}, {FPS} fps MJPEG on 127.0.0.1")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
