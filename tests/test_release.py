"""grader release: the student material holds no solution and nothing hidden, and completed it passes.

The public part of the rubric is released on purpose, in selfcheck/ (autograder.selfcheck.publish): the rubric
files with a public criterion, public probes and the facts command. Hidden labels, held-out probe inputs and the
probes that read them never are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from autograder.config import load_config
from autograder.selfcheck.publish import reads_held_out_inputs
from conftest import REPO, moodle_zip

CONFIG = load_config(REPO / "grader.toml")
TASKS = sorted(CONFIG.tasks)
SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION(.*?)### END SOLUTION", re.S)
# Solutions are not listed: one of them is, by design, the untouched release; their content is checked by line.
PRIVATE_FOLDERS = ("hidden", "probe-data")
# Released only inside selfcheck/, and only what the self-check needs.
CHECK_FOLDERS = ("rubric", "probes")


def _solution_lines(task: str) -> set[str]:
    """Every substantial line of the instructor notebooks' solutions (code regions, Markdown answers)."""
    lines: set[str] = set()
    for path in (REPO / "assignments" / task / "source").glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("solution"):
                continue
            regions = SOLUTION_REGION.findall(cell.source) if cell.cell_type == "code" else [cell.source]
            lines |= {line.strip() for region in regions for line in region.splitlines() if len(line.strip()) > 12}
    return lines


def _contents(task: str, folders: tuple[str, ...]) -> list[bytes]:
    task_dir = REPO / "assignments" / task
    return [p.read_bytes() for folder in folders for p in (task_dir / folder).rglob("*")
            if p.is_file() and p.stat().st_size > 16 and "__pycache__" not in p.parts]


def _hidden_probes(task: str) -> list[bytes]:
    """The probes and facts commands that read held-out inputs (probe-data/): hidden material too."""
    task_dir = REPO / "assignments" / task
    scripts = [task_dir / s for nb in CONFIG.task(task).notebooks for s in (nb.probe, nb.facts) if s]
    return [p.read_bytes() for p in scripts if reads_held_out_inputs(p)]


@pytest.mark.parametrize("task", TASKS)
def test_release_holds_no_solution_and_nothing_hidden(course, task):
    """No solution line, no hidden label file, rubric or probe ends up in release/TASK/."""
    result = course.cli("release", task)
    assert result.exit_code == 0, result.output
    released = course.root / "release" / task
    files = [p for p in released.rglob("*") if p.is_file()]
    notebooks = [p for p in files if p.suffix == ".ipynb" and "selfcheck" not in p.relative_to(released).parts]
    assert sorted(p.name for p in notebooks) >= sorted(nb.file for nb in CONFIG.task(task).notebooks)
    text = "\n".join(p.read_text(encoding="utf-8") for p in notebooks)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    leaked = [line for line in _solution_lines(task) if json.dumps(line)[1:-1] in text]
    assert not leaked, f"solution lines in the release: {leaked[:3]}"
    support = released.with_name(f"{task}-selfcheck") if released.with_name(f"{task}-selfcheck").is_dir() else released
    everything = files + [p for p in support.rglob("*") if p.is_file() and support != released]
    private = _contents(task, PRIVATE_FOLDERS) + _hidden_probes(task)
    assert not [p for p in everything if p.read_bytes() in private], "a hidden file or hidden probe was released"
    checking = _contents(task, CHECK_FOLDERS)
    outside = [p for p in everything if p.read_bytes() in checking and "selfcheck" not in p.relative_to(support).parts]
    assert not outside, f"rubric or probe files outside selfcheck/: {outside}"
    assert (support / "selfcheck" / "config.json").is_file()
    readme = (support / "README.md").read_text(encoding="utf-8")
    assert f"grader check {task} " in readme and "pip install" in readme
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"


def _completed(release: Path, reference: Path) -> str:
    """The released notebook with every solution cell replaced by the reference's cell of the same grade_id,
    and, as after the student's own run, each code cell's outputs (the course uploads notebooks with outputs)."""
    nb = nbformat.read(release, as_version=4)
    solved = nbformat.read(reference, as_version=4).cells
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in solved}
    by_source = {c.source: c for c in solved}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = by_id[meta["grade_id"]].source
        if cell.cell_type == "code":
            ran = by_id.get(meta.get("grade_id")) or by_source.get(cell.source)
            if ran is not None:
                cell.outputs, cell.execution_count = ran.outputs, ran.execution_count
    return nbformat.writes(nb)


NOTEBOOK_TASKS = [t for t in TASKS if not (REPO / "assignments" / t / "template").is_dir()]


@pytest.mark.sandbox
@pytest.mark.slow(cost=100)
@pytest.mark.parametrize("task", NOTEBOOK_TASKS)
def test_completed_release_passes(course, task, tmp_path):
    """A student who fills the released notebooks with the reference answers passes."""
    assert course.cli("release", task).exit_code == 0
    released = course.root / "release" / task
    reference = REPO / "assignments" / task / "solutions" / "reference"
    files = {nb.file: _completed(released / nb.file, reference / nb.file) for nb in CONFIG.task(task).notebooks}
    archive = moodle_zip(tmp_path / "moodle.zip", {"7000001": files}, names={"7000001": "Clara Vollständig"})
    assert course.cli("import", task, archive).exit_code == 0
    assert course.cli("grade", task).exit_code == 0, "grading failed"
    result = course.status(task)["7000001"]
    assert result["verdict"] == "pass", [c for c in result["criteria"] if not c["passed"]]
