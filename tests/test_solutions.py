"""Every solution under assignments/*/solutions/ gets its intended verdict and failed criteria (`grader verify`),
and the student's self-check (`grader check`) agrees with that official grading on every public criterion.

`grader verify TASK` builds a Moodle export from the task's solution folders (one participant each), imports
it, grades it through the whole pipeline (sandboxed papermill, rubric) in its own workspace and compares each
result with the folder's expected.toml. The self-check then judges each of those executions again, as
`grader check` does: with the released public rubric alone (release/TASK/selfcheck/, no hidden folder), and
must give every public criterion the official state, message and marking.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from autograder.check import SubmittedNotebook, judge, rubric_workers
from autograder.config import load_config
from autograder.execute import ExecutionOutcome
from autograder.models import CriterionResult, Execution, Run, RunExecution, Submission, SubmittedFile, open_database
from autograder.sandbox import ExitReason
from autograder.selfcheck.publish import CATALOG_FILE, SELFCHECK_FOLDER
from autograder.selfcheck.run import load_public_config
from conftest import REPO

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

CONFIG = load_config(REPO / "grader.toml")
# About 15 s of sandbox and rubric time per solution on 2 cores, for ordering only (conftest).
TASKS = [pytest.param(task, marks=pytest.mark.slow(cost=15 * len(list((CONFIG.task_dir(task) / "solutions").iterdir()))))
         for task in sorted(CONFIG.tasks)]


@pytest.mark.parametrize("task", TASKS)
def test_solutions_get_their_intended_verdicts(course, task):
    """Reference and alternatives pass; each typical mistake fails exactly its criteria, with a message."""
    result = course.cli("verify", task)
    assert result.exit_code == 0, result.output
    count = len(list((CONFIG.task_dir(task) / "solutions").glob("*/expected.toml")))
    assert f"Verified {count} solution(s) of {task}: 0 difference(s)." in result.output

    assert (course.root / "runs" / "verify" / task / "grader.db").is_file()
    assert not (course.root / "grader.db").exists()  # the course's own records are never touched
    _self_check_agrees(course, task, count)
    if task == "task4":
        _changed_threshold_is_reported(course)


def _changed_threshold_is_reported(course):
    """After a threshold is changed on purpose, verify names each solution whose result now differs."""
    config = course.config_path.read_text(encoding="utf-8")
    changed = re.sub(r"(?m)^interpretation_min_words = \d+$", "interpretation_min_words = 4000", config)
    assert changed != config
    course.config_path.write_text(changed, encoding="utf-8")
    result = course.cli("verify", "task4")
    assert result.exit_code == 1, result.output  # ExitCode.FINDINGS
    assert "reference: verdict fail (expected pass); failed ['analysis.interpretation']" in result.output
    assert re.search(r"Verified \d+ solution\(s\) of task4: [1-9]\d* difference\(s\)\.", result.output)


def _self_check_agrees(course, task: str, count: int) -> None:
    """On each solution's executions, the public rubric of the release gives every public criterion of a handed-in
    notebook the official state, message and marking (required or advice)."""
    assert course.cli("release", task).exit_code == 0
    release = next(p for p in (course.root / "release" / f"{task}-selfcheck", course.root / "release" / task)
                   if (p / SELFCHECK_FOLDER).is_dir())
    public = load_public_config(release, offline_data=REPO / ".offline-data", runs=course.root / "public-runs")
    official_only = {entry["criterion"] for entry in
                     json.loads((release / SELFCHECK_FOLDER / CATALOG_FILE).read_text(encoding="utf-8"))["official_only"]}
    workspace = course.root / "runs" / "verify" / task
    compared = public_criteria = 0
    with rubric_workers(public, public.task(task), warm=1) as rubric:
        for submission, submitted, official in _graded(workspace, course.config().task(task)):
            checked = judge(public, public.task(task), submitted, problem=submission.problem, public_only=True,
                            rubric=rubric)
            given = {item.notebook_id for item in submitted if item.outcome is not None}
            want = {c.id: (c.state, c.message, c.required) for c in official
                    if c.notebook_id in given and c.id not in official_only}
            got = {c.id: (c.state, c.message, c.required) for c in checked.criteria if c.notebook_id in given}
            assert got == want, submission.folder
            compared += 1
            public_criteria += len(want)
    assert compared == count
    assert public_criteria >= 3 * count  # the comparison covers the public rubric, not only "handed in"


def _graded(workspace: Path, task):
    """(submission, its notebooks with their executions as grading saw them, the official criteria) of each
    current submission of the verify workspace."""
    engine = open_database(f"sqlite:///{workspace / 'grader.db'}")
    with Session(engine) as session:
        for submission in session.exec(select(Submission).where(Submission.current == True)).all():  # noqa: E712
            run = session.exec(select(Run).where(Run.submission_id == submission.id)
                               .order_by(Run.id.desc())).first()
            files = {f.notebook_id: f for f in session.exec(
                select(SubmittedFile).where(SubmittedFile.submission_id == submission.id)) if f.notebook_id}
            executions = {link.notebook_id: session.get(Execution, link.execution_id) for link in session.exec(
                select(RunExecution).where(RunExecution.run_id == run.id))}
            official = [row.to_criterion() for row in session.exec(
                select(CriterionResult).where(CriterionResult.run_id == run.id))]
            folder = workspace / "submissions" / submission.folder
            submitted = []
            for notebook in task.parts():
                found, execution = files.get(notebook.id), executions.get(notebook.id)
                outcome = None if execution is None else ExecutionOutcome(
                    key=execution.key, reason=ExitReason(execution.exit_reason),
                    runner_status=execution.runner_status, message=execution.message,
                    wall_seconds=execution.wall_seconds, memory_peak_mb=execution.memory_peak_mb,
                    folder=workspace / "runs" / execution.folder)
                submitted.append(SubmittedNotebook(notebook.id, folder / found.path if found else None, outcome))
            yield submission, submitted, official
