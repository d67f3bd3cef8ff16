"""Every solution under assignments/*/solutions/ gets its intended verdict and failed criteria (`grader verify`).

`grader verify TASK` builds a Moodle export from the task's solution folders (one participant each), imports
it, grades it through the whole pipeline (sandboxed papermill, rubric) in its own workspace and compares each
result with the folder's expected.toml.
"""

from __future__ import annotations

import re

import pytest

from autograder.config import load_config
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
