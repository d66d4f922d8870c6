"""Progress of a run, for people: sources done/failed, audio hours, throughput.

On a terminal a live bar (rich); otherwise (CI, logs) one line every ``interval_s``.
"""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("refinery")


def setup_logging(verbose: bool) -> None:
    """What a command tells its user on stderr: our log lines, not the libraries' chatter."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("ray", "filelock", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RunProgress:
    def __init__(self, interval_s: float = 10.0, live: bool | None = None, items: str = "sources",
                 parts: str = "segments") -> None:
        self.items, self.parts = items, parts  # what a run counts: sources/segments, dialogues/turns
        self.interval_s = interval_s
        self.live = sys.stderr.isatty() if live is None else live
        self.total = 0
        self.done = 0
        self.failed = 0
        self.audio_s = 0.0
        self.segments = 0
        self._t0 = time.monotonic()
        self._last_line = 0.0
        self._bar = None
        self._task = None

    def start(self, to_process: int) -> None:
        self.total = to_process
        self._t0 = time.monotonic()
        if self.live and to_process:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]processing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), transient=False,
            )
            self._task = self._bar.add_task("run", total=to_process, stats="")
            self._bar.start()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._t0

    def describe(self) -> str:
        speed = self.audio_s / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"{self.done} done, {self.failed} failed, {self.segments} {self.parts}, "
                f"{self.audio_s / 3600:.2f} h audio, {speed:.1f} s audio/s")

    def source_finished(self, status: str, audio_s: float | None, segments: int) -> None:
        if status == "done":
            self.done += 1
        else:
            self.failed += 1
        self.audio_s += audio_s or 0.0
        self.segments += segments
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done + self.failed, stats=self.describe())
        elif time.monotonic() - self._last_line >= self.interval_s or self.done + self.failed == self.total:
            self._last_line = time.monotonic()
            log.info("progress: %d/%d %s; %s", self.done + self.failed, self.total, self.items, self.describe())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
