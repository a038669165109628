"""Outputs on an unattended robot: the atomic writer never replaces what is not a regular file
(symlinks are followed, FIFOs, devices and /dev/stdout are written in place) and creates files with
the user's umask; a write that fails (a full tmpfs, a full device) is one line and exit 6, with
everything else saved and the report on stdout when its own path fails.

Device nodes are made with mknod in the test's folder (root only): the writer under test must never
be pointed at the machine's real /dev, where a regression would replace /dev/full or /dev/stdout."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tmpfs import tmpfs_at
from typer.testing import CliRunner

from edgeseg.atomic import atomic_path, write_json
from edgeseg.cli import app
from edgeseg.errors import EdgesegError, ExitCode

runner = CliRunner()


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def char_device(path: Path, major: int, minor: int) -> Path:
    """A device node like /dev/full (1, 7) or /dev/null (1, 3), in the test's own folder."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("making a device node needs root (CI runs as root)")
    return path


# --- the atomic writer -------------------------------------------------------------------------------
def test_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "data" / "report.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    write_json(link, {"run": 2})
    assert link.is_symlink() and json.loads(real.read_text()) == {"run": 2}
    dangling = tmp_path / "next.json"
    dangling.symlink_to(tmp_path / "data" / "new.json")
    write_json(dangling, {"run": 3})
    assert dangling.is_symlink() and json.loads((tmp_path / "data" / "new.json").read_text()) == {"run": 3}


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    try:
        write_json(fifo, {"fifo": True})
        reader.join(10)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode) and json.loads(got[0]) == {"fifo": True}
    finally:
        if reader.is_alive():  # a writer that replaced the FIFO leaves the reader waiting: release it
            with contextlib.suppress(OSError), open(tmp_path / "report.fifo", "w"):
                pass


def test_frame_log_to_a_fifo_is_written_in_place(tiny_onnx, tmp_path):
    """`--log FIFO` feeds a reader (another process on the robot) instead of replacing the FIFO."""
    fifo = tmp_path / "frames.fifo"
    os.mkfifo(fifo)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(fifo.read_text().splitlines()), daemon=True)
    reader.start()
    try:
        r = runner.invoke(
            app, ["run", "--model", str(tiny_onnx(num_classes=8)), "--frames", "4", "--log", str(fifo)]
        )
        reader.join(10)
    finally:
        if reader.is_alive():
            with contextlib.suppress(OSError), open(fifo, "w"):
                pass
    assert r.exit_code == 0, r.output
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2, 3]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_device_is_written_in_place_never_replaced(tmp_path):
    null = char_device(tmp_path / "null", 1, 3)
    write_json(null, {"gone": True})
    with atomic_path(null) as tmp:  # a library writing to a path (onnx.save, cv2) gets a real file
        tmp.write_bytes(b"x" * 1000)
    assert stat.S_ISCHR(os.stat(null).st_mode) and os.listdir(tmp_path) == ["null"]
    full = char_device(tmp_path / "full", 1, 7)
    with pytest.raises(EdgesegError, match="No space left on device") as failed:
        write_json(full, {"x": 1})
    assert failed.value.exit_code == ExitCode.OUTPUT_FAILED and stat.S_ISCHR(os.stat(full).st_mode)


def test_a_library_failing_in_a_scratch_folder_that_began_too_small_is_a_full_disk(tmp_path, monkeypatch):
    """ONNX Runtime's C++ writer fails silently on a full disk, frees its file, and the quantizer then
    reads a truncated model ("Failed to find proper ai.onnx domain"): with less room at the start than
    the library writes, that failure is exit 6 naming the folder; with room, the library's error stands."""
    import shutil
    import tempfile

    from edgeseg.atomic import scratch_dir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    free = shutil.disk_usage(tmp_path).free
    too_small = scratch_dir("edgeseg-q", room_needed=free + (1 << 30))
    with (
        pytest.raises(EdgesegError, match=f"cannot write {tmp_path}/edgeseg-q.*: no space left") as failed,
        too_small,
    ):
        raise ValueError("Failed to find proper ai.onnx domain")
    assert failed.value.exit_code == ExitCode.OUTPUT_FAILED and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="ai.onnx domain"), scratch_dir("edgeseg-q", room_needed=1 << 20):
        raise ValueError("Failed to find proper ai.onnx domain")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_new_files_get_the_umask_and_replaced_files_keep_their_mode(tmp_path, mask):
    from edgeseg.atomic import PendingFile

    with umask(mask):
        write_json(tmp_path / "a.json", {})
        with atomic_path(tmp_path / "b.onnx") as tmp:
            tmp.write_bytes(b"model")
        pending = PendingFile(tmp_path / "c.mp4", suffix=".mp4")
        pending.path.write_bytes(b"video")
        pending.commit()
    for name in ("a.json", "b.onnx", "c.mp4"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask, name
    os.chmod(tmp_path / "a.json", 0o600)
    write_json(tmp_path / "a.json", {"again": 1})
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o600


def test_run_outputs_are_readable_by_others(tiny_onnx, tmp_path):
    """Another user or container uid reads what the robot wrote (umask 022 -> 0644, not 0600)."""
    with umask(0o022):
        r = runner.invoke(
            app,
            ["run", "--model", str(tiny_onnx(num_classes=8)), "--frames", "3", "--save", str(tmp_path / "o.avi"),
             "--log", str(tmp_path / "f.jsonl"), "--report", str(tmp_path / "r.json"),
             "--save-masks", str(tmp_path / "masks")],
        )  # fmt: skip
    assert r.exit_code == 0, r.output
    for path in [
        tmp_path / "o.avi",
        tmp_path / "f.jsonl",
        tmp_path / "r.json",
        *(tmp_path / "masks").iterdir(),
    ]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path


def test_report_to_standard_output(tiny_onnx, tmp_path):
    """`--report /dev/stdout` writes to standard output; here through /proc/self/fd/1 and a symlink to
    it (the same paths /dev/stdout resolves to), so a broken writer could only replace the link."""
    link = tmp_path / "stdout.json"
    link.symlink_to("/proc/self/fd/1")
    for target in (link, Path("/proc/self/fd/1")):
        out = subprocess.run(
            [sys.executable, "-m", "edgeseg", "run", "--model", str(tiny_onnx(num_classes=8)), "--frames", "2",
             "--report", str(target)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        report, _ = json.JSONDecoder().raw_decode(out.stdout)  # the report first, then the tables
        assert report["frames"]["processed"] == 2 and "FPS (end-to-end)" in out.stdout
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"


# --- failing writes ------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root may mount one; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    with tmpfs_at(mount, "1m") as refused:
        if refused:
            pytest.skip(f"cannot mount a tmpfs here: {refused}")
        yield mount


def test_full_disk_stops_the_run_and_saves_the_rest(tiny_onnx, tmp_path, small_disk):
    video, report, log = small_disk / "out.mp4", small_disk / "report.json", tmp_path / "frames.jsonl"
    r = runner.invoke(
        app,
        ["run", "--model", str(tiny_onnx(num_classes=8)), "--frames", "2000", "--synthetic-size", "240x320",
         "--save", str(video), "--report", str(report), "--log", str(log)],
    )  # fmt: skip
    assert r.exit_code == ExitCode.OUTPUT_FAILED, r.output
    assert "cannot write video" in one_error_line(r.stderr) and "space" in r.stderr
    assert not video.exists() and not list(small_disk.glob(".*partial*"))  # nothing unplayable kept
    result = json.loads(report.read_text())  # dropping the unplayable video made room for the report
    assert result["ended"]["exit_code"] == ExitCode.OUTPUT_FAILED
    assert result["frames"]["captured"] < 2000  # stopped at the failure, not after the whole stream
    video_out, log_out = result["outputs"]
    assert video_out["error"] and not video_out["written"] and log_out["written"]
    assert len(log.read_text().splitlines()) == result["frames"]["processed"]  # the other disk's log


def test_full_disk_at_start_fails_before_streaming(tiny_onnx, small_disk):
    with open(small_disk / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:  # until the tmpfs refuses more (ENOSPC)
            fh.write(b"\0" * 4096)
    r = runner.invoke(app, ["run", "--model", str(tiny_onnx(num_classes=8)), "--frames", "5", "--report",
                            str(small_disk / "r.json")])  # fmt: skip
    assert r.exit_code == ExitCode.OUTPUT_FAILED, r.output
    assert "--report" in one_error_line(r.stderr)
    assert sorted(os.listdir(small_disk)) == ["filler"]


@pytest.mark.parametrize("option", ["--log", "--report", "--save"])
def test_a_device_that_refuses_writes_is_exit_6_and_stays_a_device(tiny_onnx, tmp_path, option):
    (tmp_path / "dev").mkdir()
    # what /dev/full does: every write fails with ENOSPC; a video needs a video name
    full = char_device(tmp_path / "dev" / ("full.avi" if option == "--save" else "full"), 1, 7)
    r = runner.invoke(
        app, ["run", "--model", str(tiny_onnx(num_classes=8)), "--frames", "3", option, str(full)]
    )
    assert r.exit_code == ExitCode.OUTPUT_FAILED, r.output
    assert "No space left on device" in one_error_line(r.stderr)
    assert stat.S_ISCHR(os.stat(full).st_mode) and os.listdir(tmp_path / "dev") == [full.name]
    if option == "--report":
        assert json.loads(r.stdout)["frames"]["processed"] == 3


def test_an_output_under_proc_says_the_folder_is_not_writable():
    """/proc exists but answers a new file with ENOENT: the message says what is wrong (the folder is
    not writable), not "No such file or directory" about a folder that is there."""
    from edgeseg.errors import OutputFailed
    from edgeseg.output_checks import check_writable

    with pytest.raises(OutputFailed) as info:
        check_writable("/proc/x.jsonl", "--log")
    message = str(info.value)
    assert (
        message
        == "cannot write --log /proc/x.jsonl: the folder /proc is not writable (it accepts no new files)"
    )
    r = CliRunner().invoke(app, ["run", "--log", "/proc/x.jsonl", "--frames", "2"])
    assert (
        r.exit_code == 6 and "the folder /proc is not writable" in r.output and "No such file" not in r.output
    )


# --- a FIFO whose reader stops --------------------------------------------------------------------------
def _stalled(fd: int) -> bool:
    """Bytes wait in the pipe and none came for a second: its writer is waiting for the reader."""
    import time

    before = _queued(fd)
    time.sleep(1.0)
    return 0 < before == _queued(fd)


def _queued(fd: int) -> int:
    import array
    import fcntl
    import termios

    n = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, n)
    return n[0]


def _fill(fifo: Path) -> int:
    """Fill the FIFO's pipe to the brim from a writer of our own: its reader has stopped reading."""
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(fd, b"\0" * 512)
    return fd


def _wait(predicate, what: str, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("option", ["--log", "--save", "--save-masks", "--report"])
def test_a_fifo_whose_reader_stops_cannot_hold_a_stop_signal_up(tiny_onnx, tmp_path, option, sig):
    """A real FIFO with a real reader that stops reading (its pipe shrunk to one page and full): the
    writer waits, as a pipe's writer does, but a stop signal still ends the run within seconds with
    143/130, the stalled output given up (its error in the report) and every other output finalised.
    It used to wait out the 60 s the pipeline gives outputs to finish (the report: forever)."""
    import fcntl
    import signal
    import time

    fifo = tmp_path / {"--save": "out.avi", "--save-masks": "masks/synth_000004.png"}.get(option, "out.fifo")
    fifo.parent.mkdir(exist_ok=True)
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the reader: here before the run, as it must be
    writers: list[int] = []
    fcntl.fcntl(reader, 1031, 4096)  # F_SETPIPE_SZ (fcntl(2); Python names it from 3.10): one page
    masks = tmp_path / "masks"
    outputs = {"--log": tmp_path / "f.jsonl", "--save": tmp_path / "v.avi", "--save-masks": masks,
               "--report": tmp_path / "r.json"}  # fmt: skip
    outputs[option] = fifo.parent if option == "--save-masks" else fifo
    if option in ("--save-masks", "--report"):
        writers.append(_fill(fifo))  # the reader took nothing of what came before
    frames = "40" if option == "--report" else "100000"
    args = ["run", "--model", str(tiny_onnx(num_classes=8)), "--frames", frames, "--synthetic-size", "32x64"]
    for opt, path in outputs.items():
        args += [opt, str(path)]
    proc = subprocess.Popen([sys.executable, "-m", "edgeseg", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        if option == "--log":  # read the first lines, then stop: the run goes on until the pipe is full
            got = b""
            while got.count(b"\n") < 3:
                _wait(lambda: _queued(reader) > 0 or proc.poll() is not None, "the first lines")
                got += os.read(reader, 65536)
            _wait(lambda: _stalled(reader), "the writer to stall")
        elif option == "--report":  # every frame done, the log committed: the report is being written
            _wait(lambda: (tmp_path / "f.jsonl").exists() or proc.poll() is not None, "the end of the run")
        else:  # a few frames done (their masks are out)
            _wait(
                lambda: len(list(masks.glob("synth_00000[0-3].png"))) == 4 or proc.poll() is not None, "masks"
            )
        time.sleep(1.0)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=30)  # seconds: it used to be 60 s or forever
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for fd in (reader, *writers):
            os.close(fd)
    code = ExitCode.TERMINATED if sig == "SIGTERM" else ExitCode.INTERRUPTED
    assert proc.returncode == code, err
    assert "Traceback" not in err and stat.S_ISFIFO(os.stat(fifo).st_mode)
    given_up = f"cannot write {fifo}: its reader stopped reading, and {sig} asked to stop"
    if option == "--report":
        note = f"{sig}: finishing outputs and the report first"  # the signal came as the run finalised
        errors = [ln for ln in err.splitlines() if ln.strip() and ln != note]
        assert errors == [f"error: {given_up}; the report went to standard output instead"], err
        report, _ = json.JSONDecoder().raw_decode(out)  # the report, then where the outputs went
    else:
        report = json.loads((tmp_path / "r.json").read_text())
        assert [o["error"] for o in report["outputs"] if o["error"]] == [given_up]
    assert report["ended"]["exit_code"] == (code if option != "--report" else 0)
    processed = report["frames"]["processed"]
    if option != "--log":
        assert len((tmp_path / "f.jsonl").read_text().splitlines()) == processed
    if option != "--save":
        assert (tmp_path / "v.avi").stat().st_size > 0  # finalised: the test of playing it is elsewhere
    assert not list(tmp_path.rglob(".*partial*"))


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("json_out", [True, False])
def test_standard_output_whose_reader_stops_cannot_hold_a_stop_signal_up(tiny_onnx, tmp_path, json_out, sig):
    """`edgeseg run ... | reader` whose reader stopped reading (a one-page pipe, full of the frame log
    on /dev/stdout): the stop signal gives up the log and then the final report (JSON or tables) on
    standard output, so the run ends with 143/130 and the --report file whole. The report's print
    used to block in its write forever, the signal only noted."""
    import fcntl
    import signal

    reader, writer = os.pipe()
    fcntl.fcntl(writer, 1031, 4096)  # F_SETPIPE_SZ (fcntl(2)): one page, filled by a few frames' lines
    args = ["run", "--model", str(tiny_onnx(num_classes=8)), "--frames", "100000", "--synthetic-size", "32x64",
            "--log", "/dev/stdout", "--report", str(tmp_path / "r.json"), *(["--json"] if json_out else [])]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "edgeseg", *args], stdout=writer, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    os.close(writer)
    try:
        _wait(lambda: _stalled(reader) or proc.poll() is not None, "the run to fill its standard output")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=30)  # seconds: it was forever
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(reader)
    code = ExitCode.TERMINATED if sig == "SIGTERM" else ExitCode.INTERRUPTED
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ended"]["exit_code"] == code
    given_up = f"cannot write /dev/stdout: its reader stopped reading, and {sig} asked to stop"
    assert [o["error"] for o in report["outputs"] if o["error"]] == [given_up]


@pytest.mark.parametrize("json_out", [True, False])
def test_standard_output_whose_reader_closes_is_one_line_and_exit_6(tiny_onnx, tmp_path, json_out):
    """`edgeseg run --log /dev/stdout | head -1`: the reader closes the pipe after one line. The run
    ends with exit 6 and one line saying standard output's reader closed it, the --report file whole;
    rich's handler of the broken pipe exited 1 (edgeseg's 'bug' code) without a word."""
    args = ["run", "--model", str(tiny_onnx(num_classes=8)), "--frames", "300", "--synthetic-size", "32x64",
            "--log", "/dev/stdout", "--report", str(tmp_path / "r.json"), *(["--json"] if json_out else [])]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "edgeseg", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline()  # the first frame's line, then the reader is gone
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == ExitCode.OUTPUT_FAILED, err
    assert one_error_line(err) == "error: cannot write standard output: its reader closed it"
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ended"]["exit_code"] == ExitCode.OUTPUT_FAILED
