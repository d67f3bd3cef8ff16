"""Rubric workers as the grader sees them: started once per task and grading run, reused for every submission.

A rubric process costs 1 to 6 s to start (Python, pytest, the rubric's libraries), far more than the rubric
itself; autograder.rubric_worker pays it once and then serves one submission after another. The pool lends each
grading thread a worker (a thread that finds all busy waits a moment for one before it starts another: a fast
rubric keeps one worker, a slow one gets one per thread) and takes it back when the rubric ran clean. A worker
that ran past its timeout, died, or ran a rubric pytest could not finish is killed with everything it started,
and the next request starts a fresh one: a fault touches exactly one submission.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# A fresh process now and then bounds whatever the libraries a rubric uses keep growing (caches, leaks).
REQUESTS_PER_WORKER = 200
LOG_TAIL_BYTES = 4096
# Starting (Python, pytest, collecting the rubric with its libraries) may take this long on a loaded machine before
# a submission's own rubric_timeout starts counting.
STARTUP_SECONDS = 120
# How long a grading thread waits for a busy worker before it starts one more: a worker's start (1 to 6 s of CPU,
# taken from the sandboxes) pays only where rubrics take longer than this; most take a tenth of a second.
PATIENCE_SECONDS = 1.0
# pytest's exit codes of a session that ran to its end: all passed, some failed, nothing to run.
CLEAN_EXITS = (0, 1, 5)


class RubricTimeout(Exception):
    """Raised when the rubric did not answer within its timeout (the worker is killed)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no answer within {seconds:g} s")
        self.seconds = seconds


@dataclass(frozen=True)
class RubricRun:
    """How pytest ended for one submission: its exit code (the worker's, if it died) and its last output line."""

    exit_code: int
    last_line: str
    answered: bool = True  # False: the worker died on the way (exit_code is the process's)

    @property
    def clean(self) -> bool:
        """Whether pytest ran to its end: its report holds every criterion."""
        return self.answered and self.exit_code in CLEAN_EXITS


class RubricWorker:
    """One `python -m autograder.rubric_worker FOLDER` process; its output goes to a log of its own."""

    def __init__(self, folder: Path) -> None:
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="grader-rubric-")
        # A session of its own: a kill reaches whatever the rubric started (git, latexmk), too.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "autograder.rubric_worker", str(folder)], cwd=folder, env=_environment(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True,
        )
        self._pending = b""
        self._ready = False
        self.served = 0

    @property
    def alive(self) -> bool:
        return self._process.poll() is None

    def run(self, args: list[str], timeout: float) -> RubricRun:
        """Run `pytest args` for one submission; RubricTimeout (and the worker killed) if it takes over `timeout` s
        (a new worker first gets up to STARTUP_SECONDS to start)."""
        try:
            if not self._ready and self._answer(max(timeout, STARTUP_SECONDS)) is None:
                return RubricRun(self._process.wait(), self._last_line(), answered=False)
            self._ready = True
            self._log.seek(0)  # the log holds this request's output only (the offset is shared with the worker)
            self._log.truncate()
            assert self._process.stdin is not None
            self._process.stdin.write((json.dumps({"args": args}) + "\n").encode())
            self._process.stdin.flush()
            answer = self._answer(timeout)
        except TimeoutError as exc:
            self.stop()
            raise RubricTimeout(exc.args[0]) from None
        except OSError:  # died before it read the request
            answer = None
        self.served += 1
        if answer is None:
            return RubricRun(self._process.wait(), self._last_line(), answered=False)
        return RubricRun(int(json.loads(answer)["exit"]), self._last_line())

    def _answer(self, seconds: float) -> bytes | None:
        """The next line the worker answers, or None when it closed its output (it died); TimeoutError(seconds)."""
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        deadline = time.monotonic() + seconds
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(seconds)
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def _last_line(self) -> str:
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - LOG_TAIL_BYTES))
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def kill(self) -> None:
        """Kill the worker and everything it started (safe from any thread: a run waiting on it sees it die)."""
        if self._process.returncode is not None:  # reaped: its id may belong to another process by now
            return
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Kill the worker, wait for it, release its pipes and log (by the thread that used it last)."""
        self.kill()
        self._process.wait()
        for stream in (self._process.stdin, self._process.stdout, self._log):
            try:
                if stream is not None:
                    stream.close()
            except OSError:  # a pipe to a killed process
                pass


class RubricPool:
    """The workers of one task's rubric; use as a context manager, which stops them all at its end (a rubric still
    running then, after Ctrl-C say, is killed: its submission gets no verdict from it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._idle: list[RubricWorker] = []
        self._busy: set[RubricWorker] = set()
        self._guard = threading.Condition()
        self._closed = False

    def warm(self, count: int) -> "RubricPool":
        """Start `count` workers now, so that they load while the first notebooks run in their sandboxes."""
        for _ in range(count):
            try:
                worker = RubricWorker(self.folder)
            except OSError:  # cannot start one now: each submission tries again and reports why (autograder.check)
                break
            with self._guard:
                self._idle.append(worker)
        return self

    def run(self, args: list[str], timeout: float) -> RubricRun:
        """Run `pytest args` for one submission in a worker of this pool (see RubricWorker.run)."""
        worker = self._lend()
        result = None
        try:
            result = worker.run(args, timeout)
            return result
        finally:
            # Only a worker whose pytest ran to its end is trusted with the next submission.
            self._give_back(worker, trusted=result is not None and result.clean)

    def _lend(self) -> RubricWorker:
        """A waiting worker, one given back within PATIENCE_SECONDS while all are busy, or else a new one (one that
        died while it waited is stopped, not handed out)."""
        while True:
            with self._guard:
                if not self._idle and self._busy and not self._closed:
                    self._guard.wait_for(lambda: self._idle or self._closed, PATIENCE_SECONDS)
                if self._closed:  # also while it waited: no new worker the pool would never stop
                    raise RuntimeError("rubric workers used after their grading run ended")
                worker = self._idle.pop() if self._idle else None
                if worker is not None and worker.alive:
                    self._busy.add(worker)
                    return worker
            if worker is None:
                break
            worker.stop()
        worker = RubricWorker(self.folder)
        with self._guard:
            self._busy.add(worker)
        return worker

    def _give_back(self, worker: RubricWorker, trusted: bool) -> None:
        with self._guard:
            self._busy.discard(worker)
            if trusted and worker.alive and worker.served < REQUESTS_PER_WORKER and not self._closed:
                self._idle.append(worker)
                self._guard.notify()
                return
        worker.stop()

    def close(self) -> None:
        with self._guard:
            self._closed, idle, self._idle = True, self._idle, []
            busy = list(self._busy)
            self._guard.notify_all()
        for worker in busy:
            worker.kill()  # its thread sees it die, and stops it
        for worker in idle:
            worker.stop()

    def __enter__(self) -> "RubricPool":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _environment() -> dict[str, str]:
    """A minimal environment: nothing of the grader's own settings reaches the rubric."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg", PYTHONHASHSEED="0")
    return env
