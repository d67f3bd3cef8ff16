"""Release: write what students get for a task into release/TASK/, with nbgrader's generate_assignment.

The instructor notebooks in assignments/TASK/source/ carry nbgrader markup; nbgrader removes the solutions
(code between `### BEGIN SOLUTION` and `### END SOLUTION`, whole Markdown solution cells), clears outputs and
locks the given cells. The release also holds the task's public data (data/) and, where a task starts from a
template (assignments/TASK/template/, e.g. task 3's repository), that template with the notebooks placed in
it, and README.md: how a student installs and runs the self-check (German; the first cell of each instructor
notebook says the same in short). Hidden labels, solutions and the instructor notebooks are never copied here;
the public part of the rubric is published by autograder.selfcheck. nbgrader runs in a throwaway course folder
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
# The self-check's installable package, as the course hands it out in Moodle (`pip wheel --no-deps .`).
CHECK_PACKAGE = "notebook-grader-0.1.0-py3-none-any.whl"

STUDENT_README = """# {title}

## Vor dem Hochladen selbst prüfen

Mit `grader check` prüfen Sie Ihre Abgabe, bevor Sie sie in Moodle hochladen: Ihr Notebook wird so ausgeführt
wie bei der offiziellen Bewertung und mit denselben Kriterien geprüft. Sie sehen jedes öffentliche Kriterium
als bestanden oder nicht bestanden, mit einer Erklärung, was zu tun ist; welche Kriterien nur die offizielle
Bewertung entscheidet (sie braucht Daten, die Sie nicht bekommen); und wie Moodle Ihre Abgabe sieht
(Dateinamen, fehlende Ausgaben, zu große Dateien, ein ZIP ohne `.git`).

### Einmal installieren

In einer eigenen Python-Umgebung (Python 3.11 oder neuer):

```sh
python -m venv .venv
source .venv/bin/activate        # Windows: .venv\\Scripts\\activate
pip install -r requirements.txt  # die Pakete des Kurses (Datei aus dem Moodle-Kurs)
pip install {package}  # das Prüfwerkzeug (Datei aus dem Moodle-Kurs)
```

### Prüfen

Führen Sie das Notebook vollständig aus, speichern Sie es mit den Ausgaben und rufen Sie in diesem Ordner auf:

```sh
{commands}
```

Geben Sie die Dateien an, die Sie hochladen werden, unter ihrem Namen in Moodle. Die Prüfung endet mit
„Alle öffentlichen Pflichtkriterien sind erfüllt.“, wenn alles passt, sonst mit einer Liste dessen, was noch
fehlt. Ohne Sandbox (auf den meisten eigenen Rechnern) läuft das Notebook in einem normalen lokalen Kernel; die
Speicher- und Prozessgrenzen der offiziellen Bewertung gelten dann nicht, die Zeitgrenzen schon.

Der Ordner `selfcheck/` enthält, was die Prüfung braucht (öffentliche Kriterien und Einstellungen); ändern Sie
ihn nicht. Ob die Aufgabe bestanden ist, entscheidet allein die offizielle Bewertung nach dem Hochladen.
"""


@dataclass
class ReleaseReport:
    folder: Path
    files: list[str]
    support: Path  # where the student's README.md and the self-check go (see support_folder)


def support_folder(config: Config, task: TaskConfig) -> Path:
    """Where release/TASK's README.md and selfcheck/ go: release/TASK itself, except for a task that starts from
    a template (task 3's repository, which the team commits as it is and where writing README.md is part of the
    task): then beside it, release/TASK-selfcheck/, so nothing of the grader lands in the team's repository."""
    target = config.path(config.paths.release) / task.id
    return target.with_name(f"{task.id}-selfcheck") if (config.task_dir(task.id) / "template").is_dir() else target


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
    support = support_folder(config, task)
    if support != target and support.exists():
        shutil.rmtree(support)
    support.mkdir(parents=True, exist_ok=True)
    (support / "README.md").write_text(student_readme(task), encoding="utf-8")
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    return ReleaseReport(target, files, support)


def check_commands(task: TaskConfig) -> list[str]:
    """The `grader check` calls a student runs for this task (German comments where they help)."""
    if task.repository is not None:
        return [f"grader check {task.id} PFAD/team.zip   # Ihr Repository als ZIP, mit dem Ordner .git"]
    return [f"grader check {task.id} {' '.join(nb.file for nb in task.notebooks)}"]


def student_readme(task: TaskConfig) -> str:
    """release/TASK/README.md: how to install and run the self-check, in German."""
    return STUDENT_README.format(title=task.title, package=CHECK_PACKAGE, commands="\n".join(check_commands(task)))


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
