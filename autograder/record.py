"""Record: store a judged submission in our database (one transaction) and mirror it to nbgrader's gradebook.

Our database is the record of truth: a Run and its CriterionResults are committed together, so a grading
run killed at any moment leaves each submission either fully graded or not at all. nbgrader's gradebook is
a mirror, brought up to date from the database (`sync_gradebook`) after every run and at the start of
every `grader grade`, so it converges even after a crash between the two writes. In the gradebook each task
is an assignment with one notebook "verdict" holding one grade cell worth 1 point: the automatic verdict
goes to auto_score (1 = pass, 0 = fail), a TA's override to manual_score (which nbgrader ranks higher).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from autograder.config import fingerprint
from autograder.criteria import Criterion, State
from autograder.errors import GraderError, GradebookError
from autograder.nbgrader_support import nbgrader_environment
from autograder.models import (
    CriterionResult, Execution, Override, Participant, Run, RunExecution, Submission, utcnow,
)

if TYPE_CHECKING:  # only for annotations: `grader status` must not pay for the pipeline's imports (nbformat)
    from autograder.check import Judgement
    from autograder.execute import ExecutionOutcome

VERDICT_NOTEBOOK = "verdict"
VERDICT_CELL = "passed"


def record_execution(engine: Engine, outcome: ExecutionOutcome, notebook_id: str, notebook_sha: str,
                     backend: str, runtime: str, runs_root: Path) -> Execution:
    """Store a finished execution (its folder already in place); an existing row for the key is kept."""
    from autograder.execute import STAGES

    with Session(engine) as session:
        existing = session.exec(select(Execution).where(Execution.key == outcome.key)).first()
        if existing is not None:
            return existing
        execution = Execution(
            key=outcome.key, notebook_id=notebook_id, notebook_sha256=notebook_sha, backend=backend,
            runtime=runtime, exit_reason=outcome.reason.value, runner_status=outcome.runner_status,
            message=outcome.message[:2000], wall_seconds=outcome.wall_seconds,
            memory_peak_mb=outcome.memory_peak_mb, limits=json.dumps(outcome.limits),
            folder=str(outcome.folder.relative_to(runs_root)),
            **{f"{stage}_seconds": outcome.stages.get(stage, 0.0) for stage in STAGES},
        )
        session.add(execution)
        session.commit()
        session.refresh(execution)
        return execution


def has_run(engine: Engine, submission_id: int, grading_key: str) -> bool:
    """Whether the submission has a result for this key; a run with a grader fault is tried again (the fault
    may be gone), one that is `error` because nothing usable was uploaded is not."""
    faulty = select(CriterionResult.run_id).where(CriterionResult.state == State.ERROR.value)
    with Session(engine) as session:
        return session.exec(
            select(Run.id).where(Run.submission_id == submission_id, Run.grading_key == grading_key,
                                 Run.id.not_in(faulty))
        ).first() is not None


def record_run(engine: Engine, submission_id: int, grading_key: str, judgement: Judgement,
               executions: dict[str, int], backend: str, runtime: str, started_at: datetime,
               provisional: bool = False, execute_seconds: float = 0.0) -> Run:
    """Store a run with its criteria in one transaction; a repeated key becomes the next generation.
    `execute_seconds`: how long its executions took (run, or found in the cache)."""
    clock = time.monotonic()
    with Session(engine) as session:
        generation = session.exec(
            select(func.max(Run.generation)).where(Run.submission_id == submission_id,
                                                   Run.grading_key == grading_key)
        ).first()
        run = Run(
            submission_id=submission_id, grading_key=grading_key,
            generation=0 if generation is None else generation + 1, verdict=judgement.verdict,
            provisional=provisional, backend=backend, runtime=runtime, started_at=started_at,
            finished_at=utcnow(), rubric_seconds=round(judgement.rubric_seconds, 3),
            execute_seconds=round(execute_seconds, 3),
        )
        session.add(run)
        session.flush()
        for notebook_id, execution_id in executions.items():
            session.add(RunExecution(run_id=run.id, execution_id=execution_id, notebook_id=notebook_id))
        for criterion in judgement.criteria:
            session.add(CriterionResult.of(run.id, criterion))
        run.record_seconds = round(time.monotonic() - clock, 3)  # up to the commit, which it cannot include
        session.commit()
        session.refresh(run)
        return run


def record_override(engine: Engine, task: str, participant: str, verdict: str, reason: str,
                    author: str) -> Override:
    """Store a TA's decision about a participant's current submission: pass, fail, or cleared.

    The verdict it replaces is kept with it. An override keeps applying to later submissions of the
    participant until a TA confirms it on the newer one (records it again) or clears it.
    """
    with Session(engine) as session:
        found = session.exec(
            select(Participant, Submission).join(Submission, Submission.participant_id == Participant.id)
            .where(Participant.task == task, Participant.moodle_id == participant, Submission.current == True)  # noqa: E712
        ).first()
        if found is None:
            raise GraderError(f"task {task}: no participant {participant}")
        participant_row, submission = found
        standing = _standing(session, participant_row, submission)
        override = Override(participant_id=participant_row.id, submission_id=submission.id, verdict=verdict,
                            reason=reason, author=author, replaced=standing.verdict)
        session.add(override)
        session.commit()
        session.refresh(override)
        return override


@dataclass(frozen=True)
class ParticipantResult:
    """A participant's current standing: the latest run of the current submission, and any override."""

    participant: str
    name: str
    email: str
    status: str  # submitted | draft
    verdict: str  # pass | fail | error | pending (the override's, if there is one)
    automatic_verdict: str
    provisional: bool
    criteria: tuple[Criterion, ...]
    problem: str = ""  # why the upload could not be graded (German), from the import
    override_reason: str = ""
    override_author: str = ""
    override_stale: bool = False  # the override was made on an earlier submission and not yet confirmed
    graded_at: datetime | None = None
    limits: tuple[dict, ...] = ()  # per execution of the run: notebook id and the limits in force

    @property
    def overridden(self) -> bool:
        return bool(self.override_author)

    @property
    def override_disputed(self) -> bool:
        """The newest automatic verdict disagrees with the override in force (a TA should look again)."""
        return self.overridden and self.automatic_verdict in ("pass", "fail") and self.automatic_verdict != self.verdict


def current_results(engine: Engine, task: str) -> list[ParticipantResult]:
    """Every participant of the task with their current submission's latest result, by participant id."""
    with Session(engine) as session:
        rows = session.exec(
            select(Participant, Submission).join(Submission, Submission.participant_id == Participant.id)
            .where(Participant.task == task, Submission.current == True)  # noqa: E712
        ).all()
        results = _standings(session, list(rows))
    return sorted(results, key=lambda r: (len(r.participant), r.participant))


def _standing(session: Session, participant: Participant, submission: Submission) -> ParticipantResult:
    return _standings(session, [(participant, submission)])[0]


def _standings(session: Session, rows: list[tuple[Participant, Submission]]) -> list[ParticipantResult]:
    """The standing of each (participant, current submission): five queries for the whole task, not five per
    participant (`grader status` and every `grader grade` read them all)."""
    submission_ids = [submission.id for _, submission in rows]
    latest: dict[int, Run] = {}  # submission id -> its latest run
    for run in session.exec(select(Run).where(Run.submission_id.in_(submission_ids))
                            .order_by(Run.finished_at.desc(), Run.id.desc())).all():
        latest.setdefault(run.submission_id, run)
    run_ids = [run.id for run in latest.values()]
    criteria: dict[int, list[Criterion]] = {}
    for row in session.exec(select(CriterionResult).where(CriterionResult.run_id.in_(run_ids))
                            .order_by(CriterionResult.id)).all():
        criteria.setdefault(row.run_id, []).append(row.to_criterion())
    limits: dict[int, list[dict]] = {}
    for link, execution in session.exec(
            select(RunExecution, Execution).join(Execution, Execution.id == RunExecution.execution_id)
            .where(RunExecution.run_id.in_(run_ids)).order_by(RunExecution.notebook_id)).all():
        limits.setdefault(link.run_id, []).append(
            {"notebook_id": link.notebook_id, **(json.loads(execution.limits) if execution.limits else {})})
    overrides: dict[int, Override] = {}  # participant id -> the newest override
    for override in session.exec(select(Override).where(Override.participant_id.in_([p.id for p, _ in rows]))
                                 .order_by(Override.id.desc())).all():
        overrides.setdefault(override.participant_id, override)
    results = []
    for participant, submission in rows:
        run = latest.get(submission.id)
        override = overrides.get(participant.id)
        if override is not None and override.verdict == "cleared":
            override = None
        automatic = run.verdict if run else "pending"
        results.append(ParticipantResult(
            participant=participant.moodle_id, name=participant.name, email=participant.email,
            status=submission.status, verdict=override.verdict if override else automatic,
            automatic_verdict=automatic, provisional=bool(run and run.provisional and not override),
            criteria=tuple(criteria.get(run.id, ())) if run else (), problem=submission.problem,
            override_reason=override.reason if override else "", override_author=override.author if override else "",
            override_stale=bool(override and override.submission_id != submission.id),
            graded_at=run.finished_at if run else None, limits=tuple(limits.get(run.id, ())) if run else (),
        ))
    return results


@dataclass(frozen=True)
class GradebookEntry:
    student_id: str
    name: str
    email: str
    auto_score: float | None  # 1 pass, 0 fail, None not graded / error
    manual_score: float | None  # override, if any


_SCORES = {"pass": 1.0, "fail": 0.0}


def gradebook_entries(engine: Engine, task: str) -> list[GradebookEntry]:
    """What nbgrader's gradebook should hold: the graded (or overridden) participants of the task."""
    entries = []
    for result in current_results(engine, task):
        auto = _SCORES.get(result.automatic_verdict)
        manual = _SCORES.get(result.verdict) if result.override_author else None
        if auto is None and manual is None:
            continue  # not graded (yet): nbgrader would count it as 0 points
        entries.append(GradebookEntry(result.participant, result.name, result.email, auto, manual))
    return entries


def sync_gradebook(course_dir: Path, task: str, entries: list[GradebookEntry]) -> None:
    """Bring nbgrader's gradebook in line with `entries` through nbgrader's own API (idempotent).

    Skipped when the gradebook is as this function last left it with these very entries: importing nbgrader
    alone takes seconds, and most calls (a regrade with nothing to do, the check at the start of every
    `grader grade`) change nothing. Another writer (nbgrader's own tools) changes the file, and the next call
    syncs again."""
    if not entries:
        return
    database = course_dir.resolve() / "gradebook.db"
    marker = course_dir / f".grader-synced-{task}"
    wanted = fingerprint(task, [dataclasses.astuple(entry) for entry in entries])
    if _synced_state(marker, database) == wanted:
        return
    try:
        from nbgrader.api import Gradebook, MissingEntry
    except ImportError as exc:  # pragma: no cover - nbgrader is a core dependency
        raise GradebookError(f"nbgrader is not installed: {exc}") from exc
    course_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{course_dir.resolve() / 'gradebook.db'}"
    try:
        with nbgrader_environment():
            if not database.exists():
                _create_gradebook(url)
        with nbgrader_environment(), Gradebook(url) as gradebook:
            _ensure_verdict_cell(gradebook, task)
            for entry in entries:
                first, _, last = entry.name.partition(" ")
                gradebook.update_or_create_student(entry.student_id, first_name=first, last_name=last,
                                                   email=entry.email or None, lms_user_id=entry.student_id)
                try:
                    gradebook.find_submission(task, entry.student_id)
                except MissingEntry:
                    gradebook.add_submission(task, entry.student_id)
                grade = gradebook.find_grade(VERDICT_CELL, VERDICT_NOTEBOOK, task, entry.student_id)
                grade.auto_score = entry.auto_score
                grade.manual_score = entry.manual_score
                grade.needs_manual_grade = False
            gradebook.db.commit()
    except GradebookError:
        raise
    except Exception as exc:
        raise GradebookError(f"gradebook {url}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    stat = database.stat()
    marker.write_text(json.dumps({"entries": wanted, "gradebook": [stat.st_size, stat.st_mtime_ns]}), encoding="utf-8")


def _create_gradebook(url: str) -> None:
    """A new gradebook as nbgrader's Gradebook() creates one (its tables, stamped with its newest alembic
    revision), but with the revision read here instead of from an `alembic heads` subprocess, which loads
    nbgrader a second time (seconds, on the first grade of every course)."""
    import nbgrader
    from alembic.script import ScriptDirectory
    from nbgrader.api import Base
    from sqlalchemy import create_engine, text

    head = ScriptDirectory(str(Path(nbgrader.__file__).parent / "alembic")).get_current_head()
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            Base.metadata.create_all(bind=connection)
            connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:head)"), {"head": head})
    finally:
        engine.dispose()


def _synced_state(marker: Path, database: Path) -> str | None:
    """The entries fingerprint of the last sync, if the gradebook file is still exactly as that sync left it."""
    try:
        state = json.loads(marker.read_text(encoding="utf-8"))
        stat = database.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("gradebook") != [stat.st_size, stat.st_mtime_ns]:
        return None
    return state.get("entries")


def _ensure_verdict_cell(gradebook, task: str) -> None:
    gradebook.update_or_create_assignment(task)
    try:
        gradebook.find_notebook(VERDICT_NOTEBOOK, task)
    except Exception:
        gradebook.add_notebook(VERDICT_NOTEBOOK, task)
    try:
        gradebook.find_grade_cell(VERDICT_CELL, VERDICT_NOTEBOOK, task)
    except Exception:
        gradebook.add_grade_cell(VERDICT_CELL, VERDICT_NOTEBOOK, task, max_score=1, cell_type="code")
