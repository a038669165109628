"""What a live source does when it stops delivering or is not there yet: reopen with backoff, and
say in one line why it was given up."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from edgeseg.errors import EdgesegError
from edgeseg.runtime.run_stats import Gap
from edgeseg.runtime.sources import Source


@dataclass
class Reconnect:
    """What to do when a live source stops delivering, or is not there yet at start-up: reopen with
    exponential backoff until `timeout` seconds have passed without a frame. At least one reopen is
    tried, and a URL stream's open or read never blocks longer than a quarter of the timeout
    (`Source.limit_wait`: a frozen stream must not eat the budget), so a short timeout still gets its
    attempts; a camera's read is bounded by V4L2's own select timeout."""

    enabled: bool = False
    initial: float = 0.5  # seconds before the first reopen attempt
    factor: float = 2.0
    max_delay: float = 5.0
    timeout: float | None = 30.0  # give up after this long without a frame (None: never)

    def wait_limit(self) -> float | None:
        """The longest one open or read may block, or None to leave the source's own limit."""
        if not self.enabled or self.timeout is None:
            return None
        return max(0.25, self.timeout / 4)

    def reopen(self, source: Source, gap: Gap, since: float, stop: threading.Event) -> bool:
        """Reopen `source` with backoff until it opens, `since` + the timeout passes, or `stop` is set.
        The first attempt is always made, however long the failing read took."""
        delay = self.initial
        while not stop.is_set():
            if gap.attempts and self.timeout is not None:
                left = since + self.timeout - time.perf_counter()
                if left <= 0:
                    return False
                delay = min(delay, left)
            if stop.wait(delay):
                return False
            gap.attempts += 1
            try:
                source.open()
                return True
            except EdgesegError as exc:
                gap.last_error = str(exc)
                delay = min(delay * self.factor, self.max_delay)
        return False

    def lost(self, gap: Gap) -> str:
        """Why a live source was given up, in one line: what happened and what was tried."""
        if not self.enabled:
            return f"{gap.reason} (no --reconnect)"
        last = f"; last attempt: {gap.last_error}" if gap.last_error else ""
        return (
            f"{gap.reason}; {gap.attempts} reconnect attempt(s) in {self.timeout:g} s "
            f"(--reconnect-timeout){last}"
        )


def silence(t_read: float, last_frame: float) -> str:
    """Why a live source returned nothing: a read that blocked until the source's timeout is a
    frozen stream; a quick failure is a dropped connection or an unplugged device."""
    now = time.perf_counter()
    if now - t_read >= 0.5:
        return f"no frame for {now - last_frame:.1f} s (the stream froze or the connection was lost)"
    return "source stopped delivering"
