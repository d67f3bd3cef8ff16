"""Supervise one sandbox process from the host: capped output, a wall clock, a hard kill. Shared by backends.

Every supervised run is listed in a process-wide registry while it lives, so that Ctrl-C can end them all at
once (`terminate_all`): each is killed the backend's way, its `supervise` raises RunCancelled (nothing it
produced is kept), and no new run starts until `accept_runs`. A sandbox starts in a session of its own, so a
Ctrl-C on the terminal reaches the grader only, and the grader decides what to kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

from autograder.errors import SandboxError
from autograder.sandbox.base import ExitReason

_CHUNK = 1 << 16
STDERR_TAIL_BYTES = 16 * 1024
TERMINATE_SECONDS = 15  # how long terminate_all waits for the backends' kills (podman rm may take seconds)


class RunCancelled(Exception):
    """Raised by `supervise` when its run was ended by `terminate_all` (Ctrl-C), or was refused after it:
    the run has no outcome and must not be recorded."""


@dataclass
class _LiveRun:
    proc: subprocess.Popen
    stop: Callable[[subprocess.Popen], None]
    cancelled: bool = False


_registry_lock = threading.Lock()
_live: dict[int, _LiveRun] = {}
_refusing = False


@dataclass
class Supervised:
    reason: ExitReason
    exit_code: int | None
    stdout: bytes
    stderr_tail: str
    wall_seconds: float


def supervise(
    argv: Sequence[str],
    *,
    wall_seconds: float,
    output_bytes: int,
    kill: Callable[[subprocess.Popen], None] | None = None,
    cwd: str | None = None,
) -> Supervised:
    """Run argv, keep at most `output_bytes` of stdout and the tail of stderr, kill it at the wall clock.

    `kill` ends the whole sandbox (not just the direct child); by default the child's process group gets
    SIGKILL. Raises RunCancelled when `terminate_all` ended the run (or had been called before it started).
    """
    started = time.monotonic()
    stop = kill or _kill_group
    live = _start(argv, stop, cwd)
    proc = live.proc
    stdout = bytearray()
    stderr: deque[bytes] = deque()
    over_limit = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(_CHUNK):
            if len(stdout) + len(chunk) > output_bytes:
                over_limit.set()
                stop(proc)
                break
            stdout.extend(chunk)
        proc.stdout.close()

    def read_stderr() -> None:
        assert proc.stderr is not None
        size = 0
        while chunk := proc.stderr.read1(_CHUNK):
            stderr.append(chunk)
            size += len(chunk)
            while size - len(stderr[0]) > STDERR_TAIL_BYTES:
                size -= len(stderr.popleft())
        proc.stderr.close()

    readers = [threading.Thread(target=f, daemon=True) for f in (read_stdout, read_stderr)]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        proc.wait(timeout=wall_seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop(proc)
        proc.wait()
    finally:
        if proc.poll() is None:  # interrupted (Ctrl-C): leave nothing behind
            stop(proc)
            proc.wait()
        with _registry_lock:
            _live.pop(id(live), None)
    for reader in readers:
        reader.join(timeout=10)
    if live.cancelled:
        raise RunCancelled(f"sandbox command {argv[0]!r} was stopped (interrupted)")
    code = proc.returncode
    if over_limit.is_set():
        reason = ExitReason.OUTPUT_LIMIT
    elif timed_out:
        reason = ExitReason.TIMEOUT
    elif code == 0:
        reason = ExitReason.OK
    elif code is not None and code < 0:
        reason = ExitReason.KILLED
    else:
        reason = ExitReason.ERROR
    tail = b"".join(stderr)[-STDERR_TAIL_BYTES:].decode("utf-8", "replace")
    return Supervised(reason, code, bytes(stdout), tail, time.monotonic() - started)


def terminate_all() -> int:
    """Kill every live sandbox run (Ctrl-C) and refuse new ones until `accept_runs`; returns how many were killed.

    Each run is ended its backend's way (bwrap: its process and its cgroup; podman: `podman rm -f`), all at
    once, and each of their `supervise` calls raises RunCancelled. A signal handler calls it in a thread of its
    own: the handler may have interrupted the main thread while it held the registry's lock.
    """
    global _refusing
    with _registry_lock:
        _refusing = True
        runs = list(_live.values())
        for run in runs:
            run.cancelled = True
    killers = [threading.Thread(target=_end, args=(run,), daemon=True) for run in runs]
    for killer in killers:
        killer.start()
    deadline = time.monotonic() + TERMINATE_SECONDS
    for killer in killers:
        killer.join(timeout=max(0.0, deadline - time.monotonic()))
    return len(runs)


def accept_runs() -> None:
    """Let sandbox runs start again after `terminate_all` (a new `grader grade` in the same process)."""
    global _refusing
    with _registry_lock:
        _refusing = False


def live_runs() -> int:
    """How many sandbox runs are alive now."""
    with _registry_lock:
        return len(_live)


@contextlib.contextmanager
def listed(proc: subprocess.Popen, stop: Callable[[subprocess.Popen], None]):
    """List a process started elsewhere (the privileged launcher's client, which writes the run's request to its
    stdin) while it lives, so that `terminate_all` ends it with `stop`; yields its entry, whose `cancelled`
    says whether that happened. Refused, and stopped at once, after `terminate_all`."""
    with _registry_lock:
        live = _LiveRun(proc, stop, cancelled=_refusing)
        if not _refusing:
            _live[id(live)] = live
    if live.cancelled:
        _end(live)
        raise RunCancelled("sandbox run not started: grading was interrupted")
    try:
        yield live
    finally:
        with _registry_lock:
            _live.pop(id(live), None)


def _start(argv: Sequence[str], stop: Callable[[subprocess.Popen], None], cwd: str | None) -> _LiveRun:
    # Started and listed under the lock: terminate_all either sees this run or has refused it beforehand.
    with _registry_lock:
        if _refusing:
            raise RunCancelled(f"sandbox command {argv[0]!r} not started: grading was interrupted")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    cwd=cwd, start_new_session=True)
        except OSError as exc:
            raise SandboxError(f"cannot start sandbox command {argv[0]!r}: {exc}") from exc
        live = _LiveRun(proc, stop)
        _live[id(live)] = live
    return live


def _end(run: _LiveRun) -> None:
    try:
        run.stop(run.proc)
    finally:
        if run.proc.poll() is None:  # e.g. a container engine's client still starting the container
            run.proc.kill()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
