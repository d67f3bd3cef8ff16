"""Every solution under assignments/*/solutions/ gets its intended verdict and failed criteria.

Each solution folder becomes one participant of a generated Moodle export; the whole pipeline runs (import,
sandboxed papermill, rubric) and the result must equal the folder's expected.toml.
"""

from __future__ import annotations

import json

import pytest

from autograder.config import load_config
from conftest import REPO

CONFIG = load_config(REPO / "grader.toml")
# About 15 s of sandbox and rubric time per solution on 2 cores, for ordering only (conftest).
TASKS = [pytest.param(task, marks=pytest.mark.slow(cost=15 * len(list((CONFIG.task_dir(task) / "solutions").iterdir()))))
         for task in sorted(CONFIG.tasks)]


@pytest.mark.parametrize("task", TASKS)
def test_solutions_get_their_intended_verdicts(course, task):
    """Reference and alternatives pass; each typical mistake fails exactly its criteria, with a message."""
    out = course.root / "moodle"
    assert course.cli("sample", task, "--out", out).exit_code == 0
    archive = next(out.glob("*.zip"))
    worksheet = next(out.glob("Grades-*.csv"))
    assert course.cli("import", task, archive, "--worksheet", worksheet).exit_code == 0
    result = course.cli("grade", task)
    assert result.exit_code == 0, result.output
    status = course.status(task)
    expected = json.loads((out / "participants.json").read_text(encoding="utf-8"))
    problems = []
    for participant, want in expected.items():
        got = status[participant]
        failed = sorted(c["id"] for c in got["criteria"] if not c["passed"])
        if got["verdict"] != want["verdict"] or failed != sorted(want["failed"]):
            problems.append(f"{want['solution']}: {got['verdict']} {failed}, expected {want['verdict']} {sorted(want['failed'])}")
        for criterion in got["criteria"]:
            if not criterion["passed"]:
                assert criterion["message"], f"{want['solution']}: {criterion['id']} failed without a message"
    assert not problems, "\n".join(problems)
