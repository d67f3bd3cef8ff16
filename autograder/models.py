"""The grader's database (SQLModel): every import, submission, sandboxed execution, run, criterion and override.

Rows are only ever added, never rewritten, except `Submission.current` (which version of a participant's
work is the latest) — so the history of every participant stays readable. A grading result (Run and its
CriterionResults) is written in one transaction, which is what makes an interrupted `grader grade` safe to
start again: a run either exists completely or not at all.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import UniqueConstraint, event
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, create_engine

from autograder.criteria import Criterion, State
from autograder.errors import ConfigError

# Bumped whenever a table changes shape; a database of another version is refused with one line, not misread.
SCHEMA_VERSION = 3


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ImportBatch(SQLModel, table=True):
    """One `grader import` of a Moodle ZIP."""

    id: Optional[int] = Field(default=None, primary_key=True)
    task: str = Field(index=True)
    archive_name: str
    archive_sha256: str
    imported_at: datetime = Field(default_factory=utcnow)
    participants: int = 0
    new_submissions: int = 0


class Participant(SQLModel, table=True):
    """A Moodle participant (or team) of one task, keyed by the participant id Moodle gives per assignment."""

    __table_args__ = (UniqueConstraint("task", "moodle_id"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    task: str = Field(index=True)
    moodle_id: str = Field(description="Participant id (or group id of a team submission).")
    name: str
    email: str = ""
    is_team: bool = False
    members: str = Field(default="", description="Team members as 'id:name' lines (team submissions).")


class Submission(SQLModel, table=True):
    """One version of a participant's upload; `current` marks the latest."""

    id: Optional[int] = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    batch_id: int = Field(foreign_key="importbatch.id")
    content_sha256: str = Field(index=True)
    folder: str = Field(description="Folder of the files, relative to the submissions root.")
    status: str = Field(default="submitted", description="submitted | draft (from the worksheet).")
    current: bool = True
    problem: str = Field(default="", description="Why the upload cannot be graded (German), if so.")
    imported_at: datetime = Field(default_factory=utcnow)


class SubmittedFile(SQLModel, table=True):
    """A file of a submission, with where it came from in the ZIP and which task notebook it is."""

    id: Optional[int] = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    path: str
    original_name: str
    sha256: str
    size: int
    notebook_id: str = Field(default="", description="Task notebook this file was matched to, if any.")


class Execution(SQLModel, table=True):
    """One sandboxed run of one notebook. Cached by `key`: same notebook bytes, data, runtime and settings."""

    id: Optional[int] = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    notebook_id: str
    notebook_sha256: str
    backend: str
    runtime: str
    exit_reason: str
    runner_status: str
    message: str = ""
    wall_seconds: float
    memory_peak_mb: Optional[float] = None
    limits: str = Field(default="", description="The limits in force and what enforced them (JSON: limits, "
                        "memory_mb, pids, cpus, uid), as the sandbox reported them.")
    folder: str = Field(description="Output folder relative to the runs root.")
    created_at: datetime = Field(default_factory=utcnow)
    # Where the execution's time went (seconds): copying the upload and runner into place, the sandbox (start,
    # kernel, notebook, shutdown), checking what came back, the facts command's sandbox.
    staging_seconds: float = 0.0
    sandbox_seconds: float = 0.0
    capture_seconds: float = 0.0
    facts_seconds: float = 0.0


class Run(SQLModel, table=True):
    """One grading of one submission: its executions checked by the rubric, ending in a verdict."""

    __table_args__ = (UniqueConstraint("submission_id", "grading_key", "generation"),)
    id: Optional[int] = Field(default=None, primary_key=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    grading_key: str
    generation: int = Field(default=0, description="0 for the first run of a key; --force adds one.")
    verdict: str = Field(description="pass | fail | error")
    provisional: bool = False
    backend: str
    runtime: str
    started_at: datetime
    finished_at: datetime = Field(default_factory=utcnow)
    # Where the run's time went (seconds): its executions (run, or found in the cache), the rubric, and writing
    # the run and its criteria.
    execute_seconds: float = 0.0
    rubric_seconds: float = 0.0
    record_seconds: float = 0.0


class RunExecution(SQLModel, table=True):
    """Which executions a run used (several runs may share one cached execution)."""

    run_id: int = Field(foreign_key="run.id", primary_key=True)
    execution_id: int = Field(foreign_key="execution.id", primary_key=True)
    notebook_id: str


class CriterionResult(SQLModel, table=True):
    """One criterion of a run, stored as autograder.criteria.Criterion has it (state pass/fail/error)."""

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    criterion: str
    notebook_id: str = ""
    title: str = ""
    required: bool = True
    state: str = Field(description="pass | fail | error (autograder.criteria.State).")
    message: str = ""
    detail: str = ""

    @classmethod
    def of(cls, run_id: int, criterion: Criterion) -> "CriterionResult":
        return cls(run_id=run_id, criterion=criterion.id, notebook_id=criterion.notebook_id, title=criterion.title,
                   required=criterion.required, state=criterion.state.value, message=criterion.message,
                   detail=criterion.detail)

    def to_criterion(self) -> Criterion:
        return Criterion(id=self.criterion, notebook_id=self.notebook_id, title=self.title, required=self.required,
                         state=State(self.state), message=self.message, detail=self.detail)


class Override(SQLModel, table=True):
    """A TA's decision about a participant's verdict, with the reason; rows are only ever added.

    It is made on one submission (`submission_id`) but belongs to the participant: it keeps applying to later
    uploads until a TA confirms it (a new row on the newer submission) or clears it (verdict "cleared").
    """

    id: Optional[int] = Field(default=None, primary_key=True)
    participant_id: int = Field(foreign_key="participant.id", index=True)
    submission_id: int = Field(foreign_key="submission.id", index=True)
    verdict: str = Field(description="pass | fail | cleared")
    reason: str
    author: str
    replaced: str = Field(default="", description="The verdict in force when the override was made.")
    created_at: datetime = Field(default_factory=utcnow)


def open_database(url: str) -> Engine:
    """Connect (creating tables if needed). SQLite gets WAL, a busy timeout and enforced foreign keys."""
    try:
        engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    except Exception as exc:  # malformed URL, missing driver
        raise ConfigError(f"database {url!r}: {exc}") from exc
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _check_schema_version(engine, url)
        SQLModel.metadata.create_all(engine)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"database {url!r} cannot be opened: {exc}".splitlines()[0]) from exc
    return engine


def _check_schema_version(engine: Engine, url: str) -> None:
    """Stamp a new SQLite database with SCHEMA_VERSION; refuse one written by another version of the grader."""
    if not url.startswith("sqlite"):
        return
    with engine.begin() as connection:
        version = connection.exec_driver_sql("PRAGMA user_version").scalar()
        tables = connection.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type='table'").scalar()
        if tables and version != SCHEMA_VERSION:
            raise ConfigError(f"database {url!r} was written by another version of the grader (schema "
                              f"{version}, this one needs {SCHEMA_VERSION}): import into a new database")
        if not tables:
            connection.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


__all__ = [
    "CriterionResult", "Execution", "ImportBatch", "Override", "Participant", "Run", "RunExecution",
    "Session", "Submission", "SubmittedFile", "open_database", "utcnow",
]
