"""Supervise one sandbox process from the host: capped output, a wall clock, a hard kill. Shared by backends."""

from __future__ import annotations

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

    `kill` ends the whole sandbox (not just the direct child); by default the child gets SIGKILL.
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=cwd)
    except OSError as exc:
        raise SandboxError(f"cannot start sandbox command {argv[0]!r}: {exc}") from exc
    stop = kill or (lambda p: p.kill())
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
    for reader in readers:
        reader.join(timeout=10)
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
