"""Triage queries: filter and count a task's current results, and gather everything known about one submission.

Pure reads of the database and the run folders (execution.json, figures.json, facts.json), shared by
`grader status`, `grader show` and the review page, so every view tells the same story.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autograder.criteria import State
from autograder.errors import GraderError
from autograder.models import Execution, Override, Participant, Run, RunExecution, Submission
from autograder.record import ParticipantResult, current_results

VERDICT_ORDER = {"error": 0, "fail": 1, "pending": 2, "pass": 3}  # what a TA should look at first


@dataclass(frozen=True)
class CriterionCount:
    criterion: str
    title: str
    passed: int = 0
    failed: int = 0
    errors: int = 0


def failed_criteria(result: ParticipantResult) -> list[str]:
    """Ids of the required criteria that did not pass (fail or error)."""
    return [c.id for c in result.criteria if c.required and c.state is not State.PASS]


def select_results(results: list[ParticipantResult], verdict: str | None = None, criterion: str | None = None,
                   provisional: bool | None = None) -> list[ParticipantResult]:
    """The results matching every given filter; `criterion` keeps those where that criterion did not pass."""
    chosen = []
    for r in results:
        if verdict and r.verdict != verdict:
            continue
        if criterion and not any(c.id == criterion and c.state is not State.PASS for c in r.criteria):
            continue
        if provisional is not None and r.provisional != provisional:
            continue
        chosen.append(r)
    return chosen


def failures_first(results: list[ParticipantResult]) -> list[ParticipantResult]:
    """Errors, then fails, then pending, then passes; the participant order within each."""
    return sorted(results, key=lambda r: VERDICT_ORDER.get(r.verdict, 2))


def criterion_counts(results: list[ParticipantResult]) -> list[CriterionCount]:
    """Pass/fail/error counts per criterion over the results, in the rubric's order (a rubric that fails
    everyone stands out here)."""
    counts: dict[str, dict] = {}
    for r in results:
        for c in r.criteria:
            entry = counts.setdefault(c.id, {"criterion": c.id, "title": c.title, "passed": 0, "failed": 0, "errors": 0})
            entry[{State.PASS: "passed", State.FAIL: "failed", State.ERROR: "errors"}[c.state]] += 1
    return [CriterionCount(**entry) for entry in counts.values()]


CSV_COLUMNS = ("participant", "name", "verdict", "automatic_verdict", "provisional", "overridden",
               "override_reason", "failed_criteria", "graded_at")


def status_csv(results: list[ParticipantResult]) -> str:
    """The results as CSV, one row per participant (failed criteria joined by spaces)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([r.participant, r.name, r.verdict, r.automatic_verdict, r.provisional, r.overridden,
                         r.override_reason, " ".join(failed_criteria(r)),
                         r.graded_at.isoformat() if r.graded_at else ""])
    return out.getvalue()


@dataclass(frozen=True)
class ExecutionView:
    """One sandboxed execution of the latest run, with what its folder holds."""

    id: int
    notebook_id: str
    backend: str
    runtime: str
    exit_reason: str
    runner_status: str
    message: str
    wall_seconds: float
    memory_peak_mb: float | None
    folder: Path  # absolute, inside the runs root
    limits: dict
    summary: dict  # execution.json (stderr_tail, limit, timed_out_cells, …), {} if unreadable
    figures: list[dict]  # figures.json
    facts: dict | None  # facts.json (task 3), None if there is none

    @property
    def notebook_path(self) -> Path | None:
        path = self.folder / "executed.ipynb"
        return path if path.is_file() else None

    @property
    def figures_path(self) -> Path | None:
        path = self.folder / "figures.json"
        return path if path.is_file() else None

    @property
    def limit_hit(self) -> dict | None:
        """Which limit stopped the run ({"kind", "found", "maximum"}), if one did."""
        limit = self.summary.get("limit")
        return limit if isinstance(limit, dict) else None


@dataclass(frozen=True)
class HistoryEntry:
    """A run or an override, in the order they happened."""

    at: datetime
    kind: str  # run | override
    verdict: str
    text: str


@dataclass(frozen=True)
class SubmissionView:
    """Everything known about one participant's current submission."""

    task: str
    result: ParticipantResult
    run_id: int | None
    backend: str
    runtime: str
    started_at: datetime | None
    finished_at: datetime | None
    rubric_seconds: float
    executions: list[ExecutionView] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)

    @property
    def runtime_seconds(self) -> float:
        """Wall time of the latest run (sandbox and rubric), 0 if it has none."""
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return max(0.0, (_naive(self.finished_at) - _naive(self.started_at)).total_seconds())


def submission_view(engine: Engine, runs_root: Path, task: str, participant: str) -> SubmissionView:
    """The participant's current standing with its latest run's executions and the full history."""
    result = next((r for r in current_results(engine, task) if r.participant == participant), None)
    if result is None:
        raise GraderError(f"task {task}: no participant {participant}")
    with Session(engine) as session:
        participant_row = session.exec(select(Participant).where(Participant.task == task,
                                                                 Participant.moodle_id == participant)).one()
        submissions = session.exec(select(Submission).where(Submission.participant_id == participant_row.id)
                                   .order_by(Submission.id)).all()
        current = next(s for s in submissions if s.current)
        run = session.exec(select(Run).where(Run.submission_id == current.id)
                           .order_by(Run.finished_at.desc(), Run.id.desc())).first()
        executions = [] if run is None else [
            _execution_view(execution, link.notebook_id, runs_root) for link, execution in session.exec(
                select(RunExecution, Execution).join(Execution, Execution.id == RunExecution.execution_id)
                .where(RunExecution.run_id == run.id).order_by(RunExecution.notebook_id)).all()
        ]
        history = _history(session, participant_row, submissions)
    return SubmissionView(
        task=task, result=result, run_id=run.id if run else None, backend=run.backend if run else "",
        runtime=run.runtime if run else "", started_at=run.started_at if run else None,
        finished_at=run.finished_at if run else None, rubric_seconds=run.rubric_seconds if run else 0.0,
        executions=executions, history=history,
    )


def _history(session: Session, participant: Participant, submissions: list[Submission]) -> list[HistoryEntry]:
    versions = {s.id: number for number, s in enumerate(submissions, start=1)}
    entries = []
    for s in submissions:
        for run in session.exec(select(Run).where(Run.submission_id == s.id)).all():
            entries.append(HistoryEntry(
                at=run.finished_at, kind="run", verdict=run.verdict,
                text=f"upload {versions[s.id]}: graded {run.verdict}{' (provisional)' if run.provisional else ''} "
                     f"on {run.backend}/{run.runtime}, generation {run.generation}"))
    for o in session.exec(select(Override).where(Override.participant_id == participant.id)).all():
        what = "override cleared" if o.verdict == "cleared" else f"override to {o.verdict}"
        entries.append(HistoryEntry(
            at=o.created_at, kind="override", verdict=o.verdict,
            text=f"upload {versions.get(o.submission_id, '?')}: {what} by {o.author} (replaced {o.replaced or '-'}): "
                 f"{o.reason}"))
    return sorted(entries, key=lambda e: _naive(e.at))


def _execution_view(execution: Execution, notebook_id: str, runs_root: Path) -> ExecutionView:
    folder = run_folder(runs_root, execution)
    return ExecutionView(
        id=execution.id, notebook_id=notebook_id, backend=execution.backend, runtime=execution.runtime,
        exit_reason=execution.exit_reason, runner_status=execution.runner_status, message=execution.message,
        wall_seconds=execution.wall_seconds, memory_peak_mb=execution.memory_peak_mb,
        folder=folder, limits=json.loads(execution.limits) if execution.limits else {},
        summary=_read_json(folder / "execution.json", {}), figures=_read_json(folder / "figures.json", []),
        facts=_read_json(folder / "facts.json", None),
    )


def run_folder(runs_root: Path, execution: Execution) -> Path:
    """The execution's folder, resolved; refuses one outside the runs root (a tampered database row)."""
    root = runs_root.resolve()
    folder = (root / execution.folder).resolve()
    if not folder.is_relative_to(root):
        raise GraderError(f"execution {execution.id}: folder outside the runs root")
    return folder


def _read_json(path: Path, default):
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
    return value if isinstance(value, type(default)) or default is None else default


def _naive(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; compare everything as naive UTC."""
    return moment.replace(tzinfo=None)


def run_seconds(engine: Engine, task: str) -> dict[str, float]:
    """Wall time of each participant's latest run of the current submission (sandbox and rubric)."""
    with Session(engine) as session:
        rows = session.exec(
            select(Participant.moodle_id, Run).join(Submission, Submission.participant_id == Participant.id)
            .join(Run, Run.submission_id == Submission.id)
            .where(Participant.task == task, Submission.current == True)  # noqa: E712
            .order_by(Run.finished_at, Run.id)
        ).all()
    return {participant: max(0.0, (_naive(run.finished_at) - _naive(run.started_at)).total_seconds())
            for participant, run in rows}  # later runs overwrite earlier ones
