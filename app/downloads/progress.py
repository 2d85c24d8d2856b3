"""Download progress as plain values: bytes done, speed over a sliding window, time left; and their wording."""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class Phase(enum.Enum):
    CHECKING = "checking the Hub"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    CHECKING_MODEL_SET = "checking the model set"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    phase: Phase
    file_index: int  # 1-based; 0 before the first file
    file_count: int
    file_name: str  # local path of the current file, "" between files
    file_done: int
    file_total: int
    done_bytes: int  # the whole plan, including what was already on disk
    total_bytes: int
    speed: float  # bytes per second over the last few seconds (this session's transfer only)
    eta_seconds: float | None  # None while the speed is unknown

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0


ProgressCallback = Callable[[DownloadProgress], None]


class RateMeter:
    """Transfer speed over a sliding window, so a stall shows up within seconds and a burst does not linger."""

    def __init__(self, window_s: float = 8.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window_s
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()  # (time, cumulative bytes)
        self._total = 0

    def add(self, n: int) -> None:
        self._total += n
        now = self._clock()
        self._samples.append((now, self._total))
        while len(self._samples) > 2 and now - self._samples[1][0] > self._window:
            self._samples.popleft()

    def speed(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        now = self._clock()
        span = max(now - t0, t1 - t0)
        return (b1 - b0) / span if span > 0 else 0.0

    def eta(self, remaining: int) -> float | None:
        speed = self.speed()
        return remaining / speed if speed > 0 else None


def format_bytes(n: float) -> str:
    """Decimal units, as the Hub shows sizes: 16.5 GB, 246 MB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            value = n / scale
            decimals = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{decimals}f} {unit}"
    return f"{int(n)} B"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def describe(progress: DownloadProgress) -> str:
    """One line for a status bar or a terminal."""
    overall = f"{format_bytes(progress.done_bytes)} / {format_bytes(progress.total_bytes)}"
    if progress.phase is Phase.VERIFYING:  # reading back a multi-GB file takes a while: show how far
        done, total = format_bytes(progress.file_done), format_bytes(progress.file_total)
        return f"verifying {progress.file_name}  {done} / {total}"
    if progress.phase is not Phase.DOWNLOADING:
        name = f" {progress.file_name}" if progress.file_name else ""
        return f"{progress.phase.value}{name} ({overall})"
    speed = f"{format_bytes(progress.speed)}/s" if progress.speed > 0 else "-- /s"
    return (
        f"[{progress.file_index}/{progress.file_count}] {progress.file_name}  {overall}  {speed}  "
        f"ETA {format_duration(progress.eta_seconds)}"
    )
