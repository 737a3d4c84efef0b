"""A live one-line progress display for sweeps: runs done / cached / failed / left and an ETA.

On a terminal the line is redrawn in place; otherwise (CI logs, files) a line is printed at most every
``every_s`` seconds and at the end, so logs stay short.
"""
from __future__ import annotations

import sys
import time


class SweepProgress:
    """``update(done=1)`` / ``update(failed=1)`` as runs finish; ``cached`` are counted at the start."""

    def __init__(self, total: int, cached: int, *, stream=None, enabled: bool = True, every_s: float = 30.0) -> None:
        self.total, self.cached, self.done, self.failed = total, cached, 0, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.every_s = every_s
        self.started = time.perf_counter()
        self._last_print = 0.0
        self._first_finish = None  # the rate is measured from the first finished run (features come before)
        self._show(force=True)

    @property
    def left(self) -> int:
        return self.total - self.cached - self.done - self.failed

    def update(self, *, done: int = 0, failed: int = 0) -> None:
        self.done += done
        self.failed += failed
        if self._first_finish is None and done + failed:
            self._first_finish = time.perf_counter()
        self._show(force=self.left == 0)

    def line(self) -> str:
        now = time.perf_counter()
        elapsed, finished = now - self.started, self.done + self.failed
        eta = "-"
        if finished >= 2 and self.left:
            eta = _clock((now - self._first_finish) / (finished - 1) * self.left)
        return (f"sweep: {self.done} done, {self.cached} cached, {self.failed} failed, {self.left} left "
                f"of {self.total} runs | {_clock(elapsed)} elapsed, ETA {eta}")

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self.line().ljust(100))
        elif force or now - self._last_print >= self.every_s:
            self.stream.write(self.line() + "\n")
        else:
            return
        self._last_print = now
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
