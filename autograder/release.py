"""Release: write what students get for a task into release/TASK/, with nbgrader's generate_assignment.

The instructor notebooks in assignments/TASK/source/ carry nbgrader markup; nbgrader removes the solutions
(code between `### BEGIN SOLUTION` and `### END SOLUTION`, whole Markdown solution cells), clears outputs and
locks the given cells. The release also holds the task's public data (data/) and, where a task starts from a
template (assignments/TASK/template/, e.g. task 3's repository), that template with the notebooks placed in
it. Hidden labels, rubrics, probes and solutions are never copied. nbgrader runs in a throwaway course folder
with its own gradebook: the course gradebook only ever holds verdicts.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograder.config import Config, TaskConfig
from autograder.errors import GraderError
from autograder.nbgrader_support import nbgrader_environment

# What replaces a solution in the student's notebook (German: students read it).
CODE_STUB = "# IHR CODE HIER\nraise NotImplementedError()"
TEXT_STUB = "IHRE ANTWORT HIER"


@dataclass
class ReleaseReport:
    folder: Path
    files: list[str]


def release_task(config: Config, task: TaskConfig) -> ReleaseReport:
    """Generate the student version of every notebook of `task` and write release/TASK/."""
    task_dir = config.task_dir(task.id)
    source = task_dir / "source"
    missing = [nb.file for nb in task.notebooks if not (source / nb.file).is_file()]
    if missing:
        raise GraderError(f"task {task.id}: instructor notebook(s) missing in {source}: {', '.join(missing)}")
    target = config.path(config.paths.release) / task.id
    with tempfile.TemporaryDirectory(prefix="grader-release-") as tmp:
        generated = _generate(Path(tmp), task, source)
        staging = Path(tmp) / "out"
        if (task_dir / "template").is_dir():
            shutil.copytree(task_dir / "template", staging, symlinks=False)
        staging.mkdir(exist_ok=True)
        if (task_dir / "data").is_dir():
            shutil.copytree(task_dir / "data", staging / "data", dirs_exist_ok=True)
        for notebook in task.notebooks:
            shutil.copy2(generated / notebook.file, staging / notebook.file)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, target)
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    return ReleaseReport(target, files)


def _generate(course: Path, task: TaskConfig, source: Path) -> Path:
    """Run nbgrader's generate_assignment on the task's notebooks in a throwaway course folder."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config as TraitletsConfig

    (course / "source" / task.id).mkdir(parents=True)
    (course / "exchange").mkdir()
    for notebook in task.notebooks:
        shutil.copy2(source / notebook.file, course / "source" / task.id / notebook.file)
    settings = TraitletsConfig()
    settings.CourseDirectory.root = str(course)
    settings.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    settings.Exchange.root = str(course / "exchange")
    settings.ClearSolutions.code_stub = {"python": CODE_STUB}
    settings.ClearSolutions.text_stub = TEXT_STUB
    with nbgrader_environment():
        result = NbGraderAPI(config=settings).generate_assignment(task.id, force=True, create=True)
    if not result.get("success"):
        last = (result.get("error") or result.get("log") or "unknown error").strip().splitlines()[-1]
        raise GraderError(f"task {task.id}: nbgrader generate_assignment failed: {last}")
    return course / "release" / task.id
