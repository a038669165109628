"""What `run()`, `stream()` and `with` do for a Pipeline and a MultiStream alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from edgeseg.runtime.run_stats import RunStats
from edgeseg.runtime.streaming.channel import END, Channel
from edgeseg.runtime.streaming.frame import FrameResult
from edgeseg.signals import signal_name


class StreamDriver:
    """Drive GUI pumps on the caller's thread, stop on Ctrl-C / SIGTERM (recorded in the stats) or a
    closed window, and always finalise every output. A subclass provides start/stop/finish and the
    queries below."""

    stats: RunStats
    started: bool = False  # start() was called (finish() then has something to finalise)

    def start(self, *, consumer: bool = False) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def finish(self) -> RunStats:
        raise NotImplementedError

    def pumps(self) -> list[Callable[[], None]]:
        """Main-thread work of the outputs (GUI windows)."""
        return []

    def quit_requested(self) -> bool:
        """An output asked to stop (a window was closed)."""
        return False

    def wait_ended(self, timeout: float) -> bool:
        """True once every stage has finished (waiting up to `timeout` s)."""
        raise NotImplementedError

    def consumer(self) -> Channel:
        """The channel `stream()` reads results from (made by `start(consumer=True)`)."""
        raise NotImplementedError

    def current_stats(self) -> RunStats:
        """The stats as they stand now (a MultiStream first adds up its streams)."""
        return self.stats

    def run(self, status: Callable[[RunStats], None] | None = None, interval: float = 0.25) -> RunStats:
        """Run to the end of the source(s), or Ctrl-C / SIGTERM; return the stats. Outputs are finalised."""
        pumps = self.pumps()
        tick = 0.01 if pumps else interval
        try:
            self.start()
            last = 0.0
            while not self.wait_ended(tick):
                for pump in pumps:
                    pump()
                now = time.perf_counter()
                if status is not None and now - last >= interval:
                    status(self.current_stats())
                    last = now
                if self.quit_requested():
                    self.stats.interrupted = True
                    break
            if status is not None:
                status(self.current_stats())
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as `Terminated` (edgeseg.signals)
            self.stats.interrupted = True
            self.stats.signal = signal_name(exc)
        finally:
            self.stop()
            self.finish()
        return self.stats

    def stream(self) -> Iterator[FrameResult]:
        """Yield results as they are produced (sinks still get them first); the caller's thread drives
        the windows."""
        self.start(consumer=True)
        results = self.consumer()
        pumps = self.pumps()
        try:
            while (item := results.get()) is not END:
                for pump in pumps:
                    pump()
                if self.quit_requested():
                    self.stats.interrupted = True
                    break
                yield item
        except GeneratorExit:
            self.stats.interrupted = not self.wait_ended(0.0)
            raise
        finally:
            self.stop()
            self.finish()

    def __enter__(self) -> StreamDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.started:
            self.finish()
