"""Verify: grade a task's own solutions and compare each result with what its expected.toml says.

What an instructor runs after changing a rubric or a threshold. The solutions go through the same path as a
course's uploads (a Moodle export built by `autograder.sample`, import, sandboxed grading), in a workspace of
their own under runs/verify/TASK/ with its own database, so the course's records are never touched. The
workspace is kept: executions are cached by content there, and a second verify only runs the rubric again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from autograder.config import Config, TaskConfig
from autograder.execute import ensure_sandbox_ready
from autograder.grade import grade_task
from autograder.ingest import import_submissions
from autograder.models import open_database
from autograder.placement import Placer
from autograder.record import ParticipantResult, current_results
from autograder.sample import build_sample


@dataclass
class VerifyReport:
    solutions: int = 0
    differences: list[str] = field(default_factory=list)  # one line per solution that differs


def verify_task(config: Config, task: TaskConfig, workers: int = 1) -> VerifyReport:
    """Grade every solution of `task` in the verify workspace; report each that differs from expected.toml."""
    workspace = config.path(config.paths.runs) / "verify" / task.id
    local = _workspace_config(config, workspace)
    engine = open_database(local.database_url())
    archive, worksheet = build_sample(local, task, workspace / "moodle")
    import_submissions(local, task, archive, engine, worksheet)
    placer = Placer(local)
    for sandbox in placer.sandboxes(task):
        ensure_sandbox_ready(sandbox)
    grade_task(local, task, engine, placer, workers=workers)
    expected = json.loads((workspace / "moodle" / "participants.json").read_text(encoding="utf-8"))
    results = {r.participant: r for r in current_results(engine, task.id)}
    report = VerifyReport(solutions=len(expected))
    for participant, want in sorted(expected.items(), key=lambda item: item[1]["solution"]):
        difference = _difference(want, results.get(participant))
        if difference:
            report.differences.append(f"{want['solution']}: {difference}")
    return report


def _workspace_config(config: Config, workspace: Path) -> Config:
    """The course's configuration with every place the grader writes moved into the workspace."""
    workspace.mkdir(parents=True, exist_ok=True)
    paths = config.paths.model_copy(update={
        "submissions": workspace / "submissions",
        "runs": workspace / "runs",
        "database": f"sqlite:///{workspace / 'grader.db'}",
        "nbgrader_course": workspace / "nbgrader",
        "assignments": config.path(config.paths.assignments),
        "offline_data": config.path(config.paths.offline_data),
    })
    return config.model_copy(update={"paths": paths})


def _difference(want: dict, got: ParticipantResult | None) -> str:
    """'' when the result is what expected.toml says, else what differs, in one line."""
    if got is None:
        return "not graded"
    # `failed`: required criteria the solution fails; `advice`: advice it gets (failed, never deciding).
    failed = sorted(c.id for c in got.criteria if c.state.value == "fail" and c.required)
    advice = sorted(c.id for c in got.criteria if c.state.value == "fail" and not c.required)
    errors = sorted(c.id for c in got.criteria if c.state.value == "error")
    wanted_failed, wanted_errors = sorted(want.get("failed", [])), sorted(want.get("errors", []))
    wanted_advice = sorted(want.get("advice", []))
    if (got.verdict == want["verdict"] and failed == wanted_failed and advice == wanted_advice
            and errors == wanted_errors):
        return ""
    parts = [f"verdict {got.verdict} (expected {want['verdict']})"]
    if failed != wanted_failed:
        parts.append(f"failed {failed} (expected {wanted_failed})")
    if advice != wanted_advice:
        parts.append(f"advice {advice} (expected {wanted_advice})")
    if errors != wanted_errors:
        parts.append(f"errors {errors} (expected {wanted_errors})")
    return "; ".join(parts)
