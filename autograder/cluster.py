"""Cluster: run the executions of `grader grade --cluster` as tasks on a Dask distributed cluster.

The grader keeps the database and the rubrics; a worker only executes. Each worker starts the sandbox on its
own host, so every worker host needs what a local run needs (the sandbox backend with root or the `[sandbox]
launcher`, the grader installed from the same requirements.lock) and must see the course folder at the same absolute path as the grader, on a
shared file system: grader.toml, assignments, submissions, offline data and the runs folder. The worker
writes the execution folder there, as a local run does (complete, or not at all: it appears by rename), and
sends back only the execution's outcome, as size-capped JSON that the grader validates and records once.

A worker checks that it computes the grader's execution key before it runs anything: a worker whose grader,
environment or course files differ would otherwise file its execution under a key that means something else.
A worker that dies mid-run loses nothing: Dask runs the task again on another worker, and the half-run left
only a staging folder behind, never one named by its key. Notebooks whose runtime hands in a GPU need a
worker started with the resource GPU=1 (`dask worker ... --resources GPU=1`).
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, TypeAdapter, ValidationError

from autograder.config import load_config
from autograder.errors import SandboxError
from autograder.execute import ExecutionOutcome, Executor, NotebookRun
from autograder.placement import Placer
from autograder.sandbox.process import RunCancelled

MAX_OUTCOME_BYTES = 1024 * 1024  # an outcome is a few hundred bytes; anything near this is not one
RETRIES = 2  # a task that raised is tried this often more (a worker that died is rescheduled by Dask anyway)
CONNECT_SECONDS = 30
POLL_SECONDS = 0.5  # how often a waiting grader thread looks for Ctrl-C
# Slots of sandbox uids taken by the worker processes of one host: each execution holds a lock file, so two
# workers on one host never run as the same uid, whatever their number of threads.
SLOT_DIR = Path(tempfile.gettempdir()) / "grader-slots"
MAX_SLOTS = 256


class ExecutionRequest(BaseModel):
    """What a worker needs to run one notebook: where the course is, how the grader places it, and the key the
    grader expects (JSON, so that nothing but data crosses to the worker)."""

    config: Path  # grader.toml, absolute: the same path on every host
    backend: str | None
    fast_mode: bool | None
    uid_base: int
    allow_weak_limits: bool
    task: str
    notebook: str
    notebook_file: Path | None
    companions: tuple[Path, ...]
    base: Path | None
    key: str


def run_execution(request_json: str) -> str:
    """Run one execution on this worker: the outcome as JSON, its folder relative to the runs folder.

    Raises SandboxError when this worker's execution key differs from the grader's (or the sandbox cannot
    start); a student's failure is in the outcome, as in a local run.
    """
    request = ExecutionRequest.model_validate_json(request_json)
    executor = _executor(request.config, _signature(request.config), request.backend, request.fast_mode,
                         request.uid_base, request.allow_weak_limits)
    task = executor.config.task(request.task)
    run = NotebookRun(task=task, notebook=task.notebook(request.notebook), notebook_file=request.notebook_file,
                      companions=request.companions, base=request.base)
    key = executor.key(run)
    if key != request.key:
        raise SandboxError(
            f"worker {socket.gethostname()}: execution key {key[:12]} differs from the grader's {request.key[:12]} "
            f"for {request.notebook_file or request.base}: install the grader from the same requirements.lock and "
            "mount the course folder at the same path"
        )
    with _host_slot() as slot:
        outcome = executor.execute(run, slot)
    outcome.folder = outcome.folder.relative_to(executor.runs_root)
    return _outcome_schema().dump_json(outcome).decode()


class Cluster:
    """The grader's side: sends executions to the scheduler and takes their outcomes back (see `connect`)."""

    def __init__(self, client, address: str, executor: Executor, placer: Placer) -> None:
        self.client = client
        self.address = address
        self.executor = executor
        self.placer = placer

    def execute(self, run: NotebookRun, cancel: threading.Event | None = None) -> ExecutionOutcome:
        """Run one notebook on a worker and wait for its outcome; a GPU notebook goes to a worker with GPU=1.

        Raises RunCancelled once `cancel` (a threading.Event) is set: the task is cancelled, nothing recorded.
        """
        config = self.executor.config
        key = self.executor.key(run)
        request = ExecutionRequest(
            config=config.source.resolve(), backend=self.placer.default_backend, fast_mode=self.placer.fast_mode,
            uid_base=self.placer.uid_base, allow_weak_limits=self.placer.allow_weak_limits, task=run.task.id,
            notebook=run.notebook.id, notebook_file=run.notebook_file, companions=run.companions, base=run.base,
            key=key,
        )
        gpu = self.executor.placement(run).gpu
        future = self.client.submit(
            run_execution, request.model_dump_json(), key=f"execute-{key[:16]}-{uuid.uuid4().hex[:8]}",
            pure=False, retries=RETRIES, resources={"GPU": 1} if gpu else None,
        )
        finished = threading.Event()
        future.add_done_callback(lambda _: finished.set())
        while not finished.wait(POLL_SECONDS):
            if cancel is not None and cancel.is_set():
                future.cancel()
                raise RunCancelled(f"execution of {run.notebook_file} on cluster {self.address} was cancelled")
        return self._outcome(future.result(), key)

    def _outcome(self, raw: str, key: str) -> ExecutionOutcome:
        if len(raw) > MAX_OUTCOME_BYTES:
            raise SandboxError(f"cluster {self.address}: an outcome of {len(raw)} bytes came back for {key[:12]}")
        try:
            outcome = _outcome_schema().validate_json(raw)
        except ValidationError as exc:
            raise SandboxError(f"cluster {self.address}: invalid outcome for {key[:12]} ({exc.errors()[0]['msg']})") from exc
        runs_root = self.executor.runs_root
        if outcome.key != key or outcome.folder.is_absolute() or ".." in outcome.folder.parts:
            raise SandboxError(f"cluster {self.address}: the outcome for {key[:12]} names another execution")
        outcome.folder = runs_root / outcome.folder
        if not (outcome.folder / "execution.json").is_file():
            raise SandboxError(f"cluster {self.address}: execution folder {outcome.folder} is not visible here; "
                               "the course folder must be shared with every worker at the same path")
        return outcome


@contextmanager
def connect(address: str, executor: Executor, placer: Placer) -> Iterator[Cluster]:
    """A connection to the Dask scheduler at `address` (tcp://HOST:PORT) for the duration of the block.

    Raises SandboxError (one line) when the scheduler cannot be reached.
    """
    from distributed import Client  # imported here: only `--cluster` pays for it

    try:
        _reachable(address)  # a Client that failed to connect prints tracebacks when the grader exits
        client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SandboxError(f"cluster {address}: cannot connect to the Dask scheduler ({exc})") from exc
    try:
        yield Cluster(client, address, executor, placer)
    finally:
        client.close()


def _reachable(address: str) -> None:
    """Raises OSError or ValueError when nothing listens at a TCP-based address (or it has no port)."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    scheme, location = parse_address(address)
    get_backend(scheme)  # ValueError naming the known schemes
    if scheme in ("tcp", "tls", "ws", "wss"):
        socket.create_connection(parse_host_port(location), timeout=CONNECT_SECONDS).close()


@functools.cache
def _outcome_schema() -> TypeAdapter:
    """ExecutionOutcome as JSON, validated on arrival (built on first use: plain `grader` calls never pay)."""
    return TypeAdapter(ExecutionOutcome)


def _signature(config_path: Path) -> tuple[int, int]:
    """When grader.toml changes, a worker loads it again."""
    stat = config_path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _executor(config_path: Path, signature: tuple[int, int], backend: str | None, fast_mode: bool | None,
              uid_base: int, allow_weak_limits: bool) -> Executor:
    """One Executor per worker process and course (building a backend checks the host, so it is kept)."""
    config = load_config(config_path)
    placer = Placer(config, backend=backend, fast_mode=fast_mode, uid_base=uid_base,
                    allow_weak_limits=allow_weak_limits)
    return Executor(config, placer)


@contextmanager
def _host_slot() -> Iterator[int]:
    """The lowest uid slot no other execution on this host holds; held (by an flock) for the block."""
    SLOT_DIR.mkdir(mode=0o700, exist_ok=True)
    for slot in range(MAX_SLOTS):
        fd = os.open(SLOT_DIR / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            yield slot
        finally:
            os.close(fd)  # a killed worker's lock goes with its process
        return
    raise SandboxError(f"worker {socket.gethostname()}: all {MAX_SLOTS} sandbox slots are taken")
