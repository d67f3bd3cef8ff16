"""The grading pipeline for one task: for each current submission, execute → capture → check → record.

Submissions run in a pool of worker threads, each driving one sandbox at a time under its own uid slot (given
back as soon as the sandbox ends, so that the next submission runs while this one is judged);
the database writes happen as each submission finishes. A submission is skipped when it already has a run
for its grading key (its content, the rubric, the task settings, the runtime), so a second `grader grade`
does nothing and a killed one picks up where it stopped. Identical notebooks share one cached execution.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, Iterator

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autograder.check import Judgement, SubmittedNotebook, grader_fault, judge, rubric_hash, rubric_workers
from autograder.cluster import connect as connect_cluster
from autograder.config import Config, TaskConfig, fingerprint
from autograder.execute import ExecutionOutcome, Executor, NotebookRun
from autograder.placement import Placer
from autograder.ingest import submission_files
from autograder.models import Participant, Submission, SubmittedFile, utcnow
from autograder.record import (
    gradebook_entries, has_run, record_execution, record_run, sync_gradebook,
)
from autograder.sandbox.process import RunCancelled

CLUSTER_IN_FLIGHT = 256  # executions handed to a cluster at once (each waits in a thread of its own here)
_Execute = Callable[[NotebookRun, int], ExecutionOutcome]  # runs one notebook in the given uid slot


@dataclass(frozen=True)
class Pending:
    """A submission waiting to be graded, with everything needed to run it."""

    participant: str
    name: str
    submission_id: int
    runs: dict[str, NotebookRun | None]  # notebook id -> run (None: not handed in)
    grading_key: str
    problem: str = ""  # why the upload is unusable (German, from the import), if it is


@dataclass
class GradeSummary:
    graded: int = 0
    skipped: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # participants whose grading met a fault of the grader
    left_pending: int = 0  # interrupted (Ctrl-C) before their result: nothing recorded, graded by the next run
    # Seconds per stage, summed over the run: plan (gradebook check, keys, what is done), the executions'
    # staging/sandbox/capture/facts (those run, not those found in the cache), rubric, record, gradebook.
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def with_errors(self) -> bool:
        return bool(self.errors)


@dataclass
class Callbacks:
    """Optional progress hooks (the CLI's progress bar subscribes to them)."""

    on_plan: Callable[[int, int], None] = lambda to_grade, skipped: None
    on_submission_start: Callable[[Pending], None] = lambda pending: None
    on_submission_done: Callable[[Pending, Judgement], None] = lambda pending, judgement: None
    on_submission_left: Callable[[Pending], None] = lambda pending: None  # interrupted: nothing recorded


def grade_task(
    config: Config, task: TaskConfig, engine: Engine, placer: Placer, *, workers: int = 1,
    only: list[str] | None = None, force: bool = False, callbacks: Callbacks | None = None,
    cancel: threading.Event | None = None, cluster: str | None = None,
) -> GradeSummary:
    """Grade every current submission of `task` that has no result for its grading key (all with force).

    Once `cancel` is set (Ctrl-C; the caller also stops the live sandboxes), no submission starts, and those
    whose sandbox was stopped are left pending with nothing recorded; finished ones are recorded as usual.
    With `cluster` (tcp://HOST:PORT of a Dask scheduler) the executions run on its workers (autograder/cluster.py)
    and everything else here: `workers` rubric processes at once, the database written as outcomes come back.
    """
    cancel = cancel or threading.Event()
    callbacks = callbacks or Callbacks()
    executor = Executor(config, placer)
    course_dir = config.path(config.paths.nbgrader_course)
    planning = time.monotonic()
    summary = GradeSummary()
    pending = []
    for item in _plan(config, task, engine, executor, only):
        if not force and has_run(engine, item.submission_id, item.grading_key):
            summary.skipped += 1
        else:
            pending.append(item)
    summary.stages["plan"] = time.monotonic() - planning
    callbacks.on_plan(len(pending), summary.skipped)
    if not pending:
        _sync_gradebook(engine, course_dir, task, summary)  # converges after a run killed before its own sync
        return summary

    placements = [placer.place(task, nb) for nb in task.parts()]
    provisional = any(p.provisional for p in placements)
    backends = "+".join(sorted({p.sandbox.name for p in placements}))
    runtimes = "+".join(sorted({p.sandbox.runtime_id() for p in placements}))
    # `workers` sandboxes at once, and one thread more, so that a submission's rubric runs while the next
    # submission's sandbox does. With a cluster, a thread mostly waits for its remote execution: one per
    # submission in flight.
    sandboxes = workers if cluster is None else min(len(pending), CLUSTER_IN_FLIGHT)
    threads = sandboxes + 1 if cluster is None else sandboxes
    slots: queue.Queue[int] = queue.Queue()  # sandbox uid slots here (a cluster's workers number their own)
    for slot in range(sandboxes):
        slots.put(slot)
    judging = threading.Semaphore(workers)  # rubric processes at once on this host
    locks = _KeyLocks()
    runs_root = config.path(config.paths.runs)

    def work(item: Pending, execute: _Execute) -> tuple[Pending, Judgement | None, dict[str, int], object, dict]:
        if cancel.is_set():  # interrupted: start nothing new (None: left pending)
            return item, None, {}, None, {}
        slot = slots.get()
        if cancel.is_set():  # interrupted while it waited for a sandbox slot
            slots.put(slot)
            return item, None, {}, None, {}
        started = utcnow()
        clock = time.monotonic()
        executions: dict[str, int] = {}
        stages: dict[str, float] = {}  # seconds: "execute" and the executions' own STAGES
        try:
            callbacks.on_submission_start(item)
            submitted = []
            try:
                for notebook_id, run in item.runs.items():
                    if run is None:
                        submitted.append(SubmittedNotebook(notebook_id, None, None))
                        continue
                    outcome, execution_id = _execute_cached(engine, executor, locks, run, slot, runs_root, execute)
                    executions[notebook_id] = execution_id
                    submitted.append(SubmittedNotebook(notebook_id, run.notebook_file, outcome))
                    for stage, seconds in outcome.stages.items():
                        stages[stage] = stages.get(stage, 0.0) + seconds
            finally:
                slots.put(slot)  # its sandboxes are gone: the next submission runs while this one is judged
            stages["execute"] = time.monotonic() - clock
            with judging:
                judgement = judge(config, task, submitted, problem=item.problem, rubric=rubric)
        except RunCancelled:  # its sandbox was stopped by Ctrl-C: no result
            judgement = None
        except Exception as exc:  # a fault of the grader with this submission: `error`, and on to the next
            detail = "".join(traceback.format_exception(exc))
            judgement = Judgement("error", [grader_fault("grading", "Abgabe bewertet", detail)])
        if judgement is not None and judgement.has_fault and cancel.is_set():
            judgement = None  # a fault met while interrupted (a terminal's Ctrl-C reaches the rubric too): no verdict
        return item, judgement, executions, started, stages

    # Rubric processes for the whole run (not one per submission): one starts now, more only while rubrics queue.
    with _execution_part(executor, placer, cluster, cancel) as execute, \
            rubric_workers(config, task, warm=min(1, len(pending))) as rubric, \
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grade") as pool:
        futures: list[Future] = [pool.submit(work, item, execute) for item in pending]
        remaining = set(futures)
        while remaining:
            done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in done:
                item, judgement, executions, started, stages = future.result()
                if judgement is None:
                    summary.left_pending += 1
                    callbacks.on_submission_left(item)
                    continue
                recording = time.monotonic()
                record_run(engine, item.submission_id, item.grading_key, judgement, executions,
                           backends, runtimes, started, provisional=provisional,
                           execute_seconds=stages.get("execute", 0.0))
                stages.update(rubric=judgement.rubric_seconds, record=time.monotonic() - recording)
                for stage, seconds in stages.items():
                    summary.stages[stage] = summary.stages.get(stage, 0.0) + seconds
                summary.graded += 1
                summary.verdicts[judgement.verdict] = summary.verdicts.get(judgement.verdict, 0) + 1
                if judgement.has_fault:
                    summary.errors.append(item.participant)
                callbacks.on_submission_done(item, judgement)
    if not cancel.is_set():  # interrupted: out at once; the next run's sync brings the gradebook up to date
        _sync_gradebook(engine, course_dir, task, summary)
    return summary


def _sync_gradebook(engine: Engine, course_dir: Path, task: TaskConfig, summary: GradeSummary) -> None:
    """nbgrader's gradebook made to hold every recorded verdict of the task: once per run, at its end (a run killed
    before it leaves the next run to do it)."""
    syncing = time.monotonic()
    sync_gradebook(course_dir, task.id, gradebook_entries(engine, task.id))
    summary.stages["gradebook"] = time.monotonic() - syncing


def _plan(config: Config, task: TaskConfig, engine: Engine, executor: Executor,
          only: list[str] | None) -> list[Pending]:
    """The current, submitted (not draft) submissions of the task, with their notebook runs and keys."""
    wanted = set(only or [])
    plan = []
    rubric = rubric_hash(config, task)
    with Session(engine) as session:
        rows = session.exec(
            select(Participant, Submission).join(Submission, Submission.participant_id == Participant.id)
            .where(Participant.task == task.id, Submission.current == True, Submission.status == "submitted")  # noqa: E712
            .order_by(Participant.moodle_id)
        ).all()
        for participant, submission in rows:
            if wanted and participant.moodle_id not in wanted:
                continue
            files = session.exec(select(SubmittedFile).where(SubmittedFile.submission_id == submission.id)).all()
            runs = _notebook_runs(config, task, submission, list(files))
            keys = {nid: executor.key(run) if run else None for nid, run in runs.items()}
            key = fingerprint(keys, rubric, task.model_dump(mode="json"))
            quarantined = submission.problem if not files else ""  # imported without files: unusable upload
            plan.append(Pending(participant.moodle_id, participant.name, submission.id, runs, key, quarantined))
    return plan


def _notebook_runs(config: Config, task: TaskConfig, submission: Submission,
                   files: list[SubmittedFile]) -> dict[str, NotebookRun | None]:
    folder = submission_files(config, submission)
    notebooks = {f.notebook_id: f for f in files if f.notebook_id}
    # Files that travel with every notebook: whatever the student uploaded besides notebooks.
    companions = tuple(folder / f.path for f in files if not f.path.lower().endswith(".ipynb"))
    runs: dict[str, NotebookRun | None] = {}
    for notebook in task.parts():
        found = notebooks.get(notebook.id) if notebook.file else None  # a repository alone runs no notebook
        if found is not None:
            runs[notebook.id] = NotebookRun(task=task, notebook=notebook, notebook_file=folder / found.path,
                                            companions=companions, base=folder)
        elif companions and task.measures_repository(notebook):  # with or without the notebook
            runs[notebook.id] = NotebookRun(task=task, notebook=notebook, notebook_file=None,
                                            companions=companions, base=folder)
        else:
            runs[notebook.id] = None
    return runs


def _execution_part(executor: Executor, placer: Placer, cluster: str | None,
                    cancel: threading.Event) -> ContextManager[_Execute]:
    """Where the sandboxes run: here, in the worker thread's uid slot, or on the Dask cluster at `cluster`."""
    if cluster is None:
        return nullcontext(executor.execute)
    return _remote_execution(cluster, executor, placer, cancel)


@contextmanager
def _remote_execution(cluster: str, executor: Executor, placer: Placer,
                      cancel: threading.Event) -> Iterator[_Execute]:
    with connect_cluster(cluster, executor, placer) as remote:
        yield lambda run, slot: remote.execute(run, cancel)


def _execute_cached(engine: Engine, executor: Executor, locks: "_KeyLocks", run: NotebookRun, slot: int,
                    runs_root: Path, execute: _Execute) -> tuple[ExecutionOutcome, int]:
    key = executor.key(run)
    with locks.hold(key):  # two submissions with the same notebook: the second waits and reuses
        # Executions are kept by content: one already in the runs folder (this course's, another course's sharing
        # the folder, or a killed run's) is read back instead of run again; its row, if any, is kept.
        outcome = executor.finished(key) or execute(run, slot)
        sandbox = executor.placement(run).sandbox
        execution = record_execution(engine, outcome, run.notebook.id, key, sandbox.name, sandbox.runtime_id(), runs_root)
        return outcome, execution.id


class _KeyLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def hold(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())
