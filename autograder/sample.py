"""Build what Moodle would hand an instructor, from a task's solutions: a submissions ZIP and a worksheet.

Each folder under assignments/TASK/solutions/ becomes one participant (the reference, valid alternatives,
typical mistakes), with a stable participant id and a German name. Used by `make demo` and by the tests, so
both exercise the same import path as a real course.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from autograder.config import Config, TaskConfig
from autograder.moodle import Worksheet, write_worksheet

NAMES = [
    "Lena Schmidt", "Jonas Müller", "Sophie Weber", "Lukas Fischer", "Marie Wagner", "Felix Becker",
    "Hannah Schäfer", "Paul Hoffmann", "Emma Koch", "Leon Richter", "Mia Klein", "Noah Wolf",
    "Lea Schröder", "Elias Neumann", "Anna Schwarz", "Ben Zimmermann", "Clara Braun", "David Krüger",
    "Ida Hofmann", "Emil Hartmann", "Frieda Lange", "Anton Schmitt", "Greta Werner", "Oskar Krause",
]
WORKSHEET_HEADER = [
    "Identifier", "Full name", "Email address", "Status", "Grade", "Scale", "Grade can be changed",
    "Last modified (submission)", "Last modified (grade)", "Feedback comments",
]


@dataclass(frozen=True)
class SampleParticipant:
    moodle_id: str
    name: str
    solution: str
    expected: dict


def solutions(config: Config, task: TaskConfig) -> list[Path]:
    """The task's solution folders (each with an expected.toml), sorted by name."""
    root = config.task_dir(task.id) / "solutions"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "expected.toml").is_file()]
    return sorted(found, key=lambda p: (p.name != "reference", not p.name.startswith("alt"), p.name))


def representative(folders: list[Path], count: int | None) -> list[Path]:
    """The reference and `count - 1` others spread evenly over the rest (alternatives first, then the
    mistakes by name, so every kind of submission is in), or all of them without a count."""
    if count is None or count >= len(folders):
        return folders
    head, rest = folders[:1], folders[1:]
    others = count - len(head)
    return head + [rest[i * len(rest) // others] for i in range(others)] if others > 0 else head


def sample_participants(config: Config, task: TaskConfig, count: int | None = None) -> list[SampleParticipant]:
    rng = random.Random(f"sample-{task.id}")
    participants = []
    for index, folder in enumerate(representative(solutions(config, task), count)):
        expected = tomllib.loads((folder / "expected.toml").read_text(encoding="utf-8"))
        moodle_id = str(rng.randrange(1_000_000, 9_999_999))
        participants.append(SampleParticipant(moodle_id, NAMES[index % len(NAMES)], folder.name, expected))
    return participants


def solution_files(config: Config, task: TaskConfig, solution: str, expected: dict) -> dict[str, Path]:
    """A solution's files by upload path. A folder holding only some of the task's notebooks (the one part
    that differs) is completed with the reference's other notebooks, unless expected.toml says
    `complete = true` (a submission that really lacks a notebook)."""
    root = config.task_dir(task.id) / "solutions"
    folder = root / solution
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*")
             if p.is_file() and p.name != "expected.toml"}
    if not expected.get("complete", False) and solution != "reference":
        for notebook in task.notebooks:
            if notebook.file not in files and (root / "reference" / notebook.file).is_file():
                files[notebook.file] = root / "reference" / notebook.file
    return files


def build_sample(config: Config, task: TaskConfig, out: Path, count: int | None = None) -> tuple[Path, Path]:
    """Write `<course>-<task>-<cmid>.zip`, `Grades-….csv` and `participants.json` (who is which solution):
    for every solution, or for a representative `count` of them."""
    out.mkdir(parents=True, exist_ok=True)
    short = config.course.short_name
    archive = out / f"{short}-{task.id}-4711.zip"
    worksheet = out / f"Grades-{short}-{task.id}-4711.csv"
    participants = sample_participants(config, task, count)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, tempfile.TemporaryDirectory() as tmp:
        for p in participants:
            prefix = f"{p.name}_{p.moodle_id}_assignsubmission_file/"
            files = solution_files(config, task, p.solution, p.expected)
            files = _repository_uploads(files, p.solution, p.expected, Path(tmp))
            for name, path in sorted(files.items()):
                zf.write(path, prefix + name)
    scale = f"{config.scale.failed}   {config.scale.passed}"
    rows = [
        [f"Participant {p.moodle_id}", p.name, _email(p.name), "Submitted for grading", "", scale, "Yes",
         "Monday, 10 November 2026, 9:15 AM", "-", ""]
        for p in participants
    ]
    write_worksheet(Worksheet(header=list(WORKSHEET_HEADER), rows=rows), worksheet)
    (out / "participants.json").write_text(json.dumps(
        {p.moodle_id: {"name": p.name, "solution": p.solution, **p.expected} for p in participants},
        ensure_ascii=False, indent=2,
    ), encoding="utf-8")
    return archive, worksheet


def _repository_uploads(files: dict[str, Path], solution: str, expected: dict, tmp: Path) -> dict[str, Path]:
    """A solution stored as a git bundle (task 3: a repository cannot be committed inside ours) is uploaded
    as a team would: the repository as `<team>.zip` with its .git (cloned here from our own, trusted bundle;
    `zip_folder` in expected.toml puts it in a folder of the ZIP), or, with `upload = "bundle"`, the bundle
    itself beside the notebook taken from it."""
    bundles = [name for name in files if name.endswith(".bundle")]
    if not bundles:
        return files
    team = solution.replace("_", "-")
    uploads = {name: path for name, path in files.items() if name not in bundles}
    clone = tmp / team
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null"}
    subprocess.run(["git", "clone", "-q", str(files[bundles[0]]), str(clone)], env=env, check=True,
                   capture_output=True)
    subprocess.run(["git", "remote", "remove", "origin"], cwd=clone, env=env, check=True, capture_output=True)
    notebooks = sorted(clone.glob("*.ipynb"))
    if expected.get("upload") == "bundle":
        uploads.update({p.name: p for p in notebooks})
        uploads[f"{team}.bundle"] = files[bundles[0]]
        return uploads
    archive = tmp / f"{team}.zip"
    folder = expected.get("zip_folder", "")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(clone.rglob("*")):
            if path.is_file():
                zf.write(path, (f"{folder}/" if folder else "") + path.relative_to(clone).as_posix())
    uploads[archive.name] = archive
    return uploads


def _email(name: str) -> str:
    plain = name.lower().replace("ä", "ae").replace("ö", "oe").replace("ü", "ue").replace("ß", "ss")
    return plain.replace(" ", ".") + "@stud.example.edu"
