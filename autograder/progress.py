"""Live progress of `grader grade`: done/total, verdicts so far, elapsed, ETA and the submissions running now.

`GradeProgress` subscribes to the pipeline's `Callbacks` and keeps the counts (worker threads report starts, the
grading loop reports results). Two views show it: on a terminal a Rich Live display that is redrawn twice a
second; otherwise (a log, CI, a pipe) plain lines, one per finished submission and a status line every
`interval` seconds, so that a 30-minute notebook never looks frozen.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from autograder.check import Judgement
from autograder.grade import Callbacks, Pending

STATUS_INTERVAL_SECONDS = 30.0
SHOWN_RUNNING = 8  # the Live view lists at most this many running submissions (the longest-running first)
MAIN_VERDICTS = ("pass", "fail", "error")  # always shown, even at 0


@dataclass(frozen=True)
class Snapshot:
    """The state of a grading run at one moment."""

    total: int
    skipped: int
    done: int
    left: int  # interrupted (Ctrl-C): nothing recorded
    verdicts: dict[str, int]
    running: list[tuple[Pending, float]]  # (submission, seconds it has been running), longest first
    elapsed: float
    eta: float | None  # seconds until all are done; None until one has finished

    def counts(self) -> str:
        """'3 pass, 1 fail, 0 error' (and any other verdict that occurred)."""
        names = [*MAIN_VERDICTS, *sorted(set(self.verdicts) - set(MAIN_VERDICTS))]
        return ", ".join(f"{self.verdicts.get(name, 0)} {name}" for name in names)

    def status_line(self) -> str:
        """One line: done/total, verdicts, elapsed, ETA and what runs now."""
        eta = duration(self.eta) if self.eta is not None else "?"
        running = ", ".join(f"{p.participant} ({duration(s)})" for p, s in self.running) or "none"
        return (f"progress: {self.done}/{self.total} done ({self.counts()}), elapsed {duration(self.elapsed)}, "
                f"ETA {eta}; running: {running}")


class GradeProgress:
    """Counts what the grading pipeline reports; thread-safe. `callbacks()` plugs it into `grade_task`.

    `on_change(event, pending, judgement)` is called (under the lock, so views never interleave their output)
    for "plan", "start", "done", "stopped" (interrupted while it ran) and "left" (interrupted before it started).
    """

    def __init__(self, on_change: Callable[[str, Pending | None, Judgement | None], None] = lambda *_: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lock = threading.RLock()  # views also write their lines under it
        self._clock = clock
        self._on_change = on_change
        self._started = clock()
        self._total = self._skipped = self._done = self._left = 0
        self._verdicts: dict[str, int] = {}
        self._running: dict[int, tuple[Pending, float]] = {}  # submission id -> (submission, start time)

    def callbacks(self) -> Callbacks:
        return Callbacks(on_plan=self.plan, on_submission_start=self.start, on_submission_done=self.finish,
                         on_submission_left=self.leave)

    def plan(self, to_grade: int, skipped: int) -> None:
        with self.lock:
            self._total, self._skipped = to_grade, skipped
            self._started = self._clock()
            self._on_change("plan", None, None)

    def start(self, pending: Pending) -> None:
        with self.lock:
            self._running[pending.submission_id] = (pending, self._clock())
            self._on_change("start", pending, None)

    def finish(self, pending: Pending, judgement: Judgement) -> None:
        with self.lock:
            self._running.pop(pending.submission_id, None)
            self._done += 1
            self._verdicts[judgement.verdict] = self._verdicts.get(judgement.verdict, 0) + 1
            self._on_change("done", pending, judgement)

    def leave(self, pending: Pending) -> None:
        with self.lock:
            was_running = self._running.pop(pending.submission_id, None) is not None
            self._left += 1
            self._on_change("stopped" if was_running else "left", pending, None)

    def snapshot(self) -> Snapshot:
        with self.lock:
            now = self._clock()
            elapsed = now - self._started
            running = sorted(((p, now - t) for p, t in self._running.values()), key=lambda r: -r[1])
            remaining = self._total - self._done - self._left
            # Finished submissions per second so far, over all workers together.
            eta = elapsed / self._done * remaining if self._done else None
            return Snapshot(self._total, self._skipped, self._done, self._left, dict(self._verdicts), running,
                            elapsed, eta)


class PlainProgress:
    """Plain lines for logs and pipes: one per finished submission, a status line every `interval` seconds."""

    def __init__(self, out: TextIO, title: str, interval: float = STATUS_INTERVAL_SECONDS, workers: str = "") -> None:
        self.out = out
        self.title = title
        self.interval = interval
        self.workers = workers
        self.progress = GradeProgress(self._changed)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="grade-progress", daemon=True)

    def __enter__(self) -> "PlainProgress":
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)

    def callbacks(self) -> Callbacks:
        return self.progress.callbacks()

    def _changed(self, event: str, pending: Pending | None, judgement: Judgement | None) -> None:
        if event == "plan" and (planned := self.progress.snapshot()).total:
            self._write(plan_line(self.title, planned, self.workers))
        elif event == "done" and pending is not None and judgement is not None:
            done = self.progress.snapshot()
            self._write(f"[{done.done}/{done.total}] {pending.participant} {pending.name}: {judgement.verdict} "
                        f"({done.counts()})")
        elif event == "stopped" and pending is not None:
            self._write(f"  {pending.participant} {pending.name}: interrupted, left pending")

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self.progress.lock:
                now = self.progress.snapshot()
                if now.total:  # not while planning, nor with nothing to do
                    self._write(now.status_line())

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


class LiveProgress:
    """A Rich Live display on a terminal: a bar with counts, elapsed and ETA, and the running submissions."""

    def __init__(self, console: Console, title: str, workers: str = "") -> None:
        self.console = console
        self.title = title
        self.workers = workers
        self.progress = GradeProgress(self._changed)
        self._live = Live(console=console, get_renderable=self._render, refresh_per_second=2, transient=True)

    def __enter__(self) -> "LiveProgress":
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(*exc)

    def callbacks(self) -> Callbacks:
        return self.progress.callbacks()

    def _changed(self, event: str, pending: Pending | None, judgement: Judgement | None) -> None:
        if event == "plan" and (planned := self.progress.snapshot()).total:
            self.console.print(plan_line(self.title, planned, self.workers), highlight=False)
        elif event == "done" and pending is not None and judgement is not None:
            style = {"pass": "green", "fail": "yellow", "error": "red"}.get(judgement.verdict, "")
            self.console.print(Text.assemble(f"  {pending.participant} {pending.name}: ", (judgement.verdict, style)))
        elif event == "stopped" and pending is not None:
            self.console.print(Text(f"  {pending.participant} {pending.name}: interrupted, left pending", "yellow"))

    def _render(self) -> RenderableType:
        now = self.progress.snapshot()
        eta = duration(now.eta) if now.eta is not None else "?"
        head = Table.grid(padding=(0, 1))
        head.add_row(Text(self.title, "bold"), ProgressBar(total=now.total or None, completed=now.done, width=30),
                     Text(f"{now.done}/{now.total}"), Text(now.counts()),
                     Text(f"elapsed {duration(now.elapsed)}  ETA {eta}", "dim"))
        lines = [Text(f"  running {p.participant} {p.name}  {duration(s)}", "cyan")
                 for p, s in now.running[:SHOWN_RUNNING]]
        if len(now.running) > SHOWN_RUNNING:
            lines.append(Text(f"  … and {len(now.running) - SHOWN_RUNNING} more running", "cyan"))
        return Group(head, *lines)


def duration(seconds: float) -> str:
    """'42s', '3m05s', '1h02m'."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def progress_view(console: Console, title: str, interval: float = STATUS_INTERVAL_SECONDS,
                  workers: str = "") -> LiveProgress | PlainProgress:
    """Rich Live where `console` is a terminal, plain lines (to the same output) otherwise. `workers` says how
    many submissions run at once and why; it heads the output once the plan is known."""
    if console.is_terminal:
        return LiveProgress(console, title, workers)
    return PlainProgress(console.file, title, interval, workers)


def plan_line(title: str, now: Snapshot, workers: str) -> str:
    """'grading task5: 40 submission(s), 3 already graded, 2 worker(s) (…)'."""
    return f"{title}: {now.total} submission(s), {now.skipped} already graded" + (f", {workers}" if workers else "")
