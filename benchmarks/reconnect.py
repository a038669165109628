"""Reconnect behaviour of `edgeseg run --url` against a real MJPEG server on 127.0.0.1.

Starts ffmpeg (`-f mpjpeg -listen 1`; with --server python the stand-in edgeseg/benchmarking/mjpeg_server.py)
with edgeseg/benchmarking/stream_servers.py (as the tests), runs `edgeseg run` on it as a subprocess, and breaks the stream the ways a robot's camera breaks:
killed, frozen (SIGSTOP: the connection stays open, nothing arrives), started late. Prints, per
scenario, the exit code, the recorded gap and reconnect attempts, and how long the run took to
notice, recover or give up after the fault. The figures are timeouts and backoff, not speed; they
are docs/runtime.md's "measured reconnect behaviour".

    python benchmarks/reconnect.py [--server ffmpeg|python] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeseg.benchmarking.stream_servers import (  # the tests' servers, killed and frozen alike
    FPS,
    StreamServer,
)


def scenario(name: str, kind: str, run_args: list[str], fault) -> dict:
    server = StreamServer(kind)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "edgeseg", "run", "--url", server.url, "--threads", "1",
               "--report", str(report), *run_args]  # fmt: skip
        try:
            t_fault = fault(
                server, lambda: subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    def __call__(self, server: StreamServer, launch) -> float:
        if self.action == "late":
            self.proc = launch()
            t = time.monotonic()
            time.sleep(self.after)
            server.start()
            return t
        server.start()
        self.proc = launch()
        server.wait_for_client()
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
        ),
        scenario(
            "killed for good, --reconnect-timeout 10",
            k,
            ["--reconnect", "--reconnect-timeout", "10"],
            Fault("kill"),
        ),
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
