"""Run: execute a student's files like the official grading and judge the public criteria only.

The files go through the grading's own steps: a one-participant Moodle archive read by autograder.ingest
(an uploaded ZIP unpacked, notebooks matched by their nbgrader cells as the official import does), executed by
autograder.execute in the sandbox where one can be built, else in a plain local kernel (autograder.selfcheck
.local, limits not enforced), and judged by autograder.check with the public rubric published next to the
notebooks. The hidden folders are not there, and no hidden test runs (`public_only`).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from autograder.check import SubmittedNotebook, judge
from autograder.config import Config, TaskConfig
from autograder.criteria import Criterion, verdict_of
from autograder.errors import ConfigError, GraderError, SandboxError
from autograder.execute import Executor, NotebookRun, ensure_sandbox_ready
from autograder.ingest import expected_cell_ids, match_notebooks, read_moodle_zip
from autograder.placement import Placer
from autograder.selfcheck.local import LocalPlacer
from autograder.selfcheck.publish import CATALOG_FILE, CONFIG_FILE, SELFCHECK_FOLDER
from autograder.selfcheck.upload import UploadView, view_upload

PARTICIPANT = "1"


@dataclass
class CheckReport:
    """The result of one self-check: public criteria, the official-only ones, the upload, how it ran."""

    task: TaskConfig
    verdict: str
    criteria: list[Criterion] = field(default_factory=list)
    official_only: list[dict] = field(default_factory=list)  # {criterion, title}
    unchecked: list[str] = field(default_factory=list)  # parts of the task not among the files checked
    upload: UploadView = field(default_factory=UploadView)
    sandboxed: bool = True
    problem: str = ""  # German: why the files could not be checked at all


def find_release(task_id: str, start: Path, explicit: Path | None = None) -> Path:
    """The released task folder holding selfcheck/: `explicit`, else `start` or a parent of it, else
    release/TASK below one of them; ConfigError naming where it looked otherwise."""
    candidates = [explicit] if explicit else _candidates(task_id, start)
    for candidate in candidates:
        if task_id in _read_public(candidate).get("tasks", {}):
            return candidate
    raise ConfigError(f"no released material of {task_id} found (looked for {SELFCHECK_FOLDER}/{CONFIG_FILE} in "
                      f"{explicit or start} and its parents); pass --release FOLDER")


def _candidates(task_id: str, start: Path):
    for folder in [start, *start.parents]:
        yield folder
        if folder.name == task_id:  # inside task 3's released repository: its self-check lies beside it
            yield folder.with_name(f"{task_id}-selfcheck")
        yield folder / f"{task_id}-selfcheck"
        yield folder / "release" / task_id
        yield folder / "release" / f"{task_id}-selfcheck"


def load_public_config(release: Path, offline_data: Path | None = None, runs: Path | None = None) -> Config:
    """The public settings `grader release` wrote, with the places the check writes to set for this run."""
    folder = release / SELFCHECK_FOLDER
    try:
        config = Config.model_validate({**_read_public(release), "root": folder, "source": folder / CONFIG_FILE})
    except ValidationError as exc:
        raise ConfigError(f"{folder / CONFIG_FILE}: not the settings this grader version reads "
                          f"({exc.errors()[0]['msg']}); release the task again") from None
    paths = {"runs": runs or folder / "runs"}
    if offline_data is not None:
        paths["offline_data"] = offline_data.resolve()
    config = config.model_copy(update={"paths": config.paths.model_copy(update=paths)})
    if not config.path(config.paths.offline_data).is_dir():  # a student: the notebooks' own model names apply
        config = _without_offline_parameters(config)
    return config


def check_upload(release: Path, task_id: str, paths: list[Path], *, local: bool = False,
                 offline_data: Path | None = None) -> CheckReport:
    """Check `paths` (what the student will upload) against the released task in `release`."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise GraderError(f"file not found: {missing[0]}")
    with tempfile.TemporaryDirectory(prefix="grader-check-") as tmp:
        config = load_public_config(release, offline_data, runs=Path(tmp) / "runs")
        task = config.task(task_id)
        catalog = json.loads((release / SELFCHECK_FOLDER / CATALOG_FILE).read_text(encoding="utf-8"))
        report = CheckReport(task, "error", official_only=catalog["official_only"],
                             upload=view_upload(task, paths, config.sandbox.max_notebook_mb))
        placer, report.sandboxed = _placer(config, task, local)
        folder, files, problem = stage_upload(paths, Path(tmp))
        if problem:
            report.problem = problem
            return report
        submitted = execute_parts(config, task, placer, folder, files)
        judgement = judge(config, task, submitted, public_only=True)
        given = {item.notebook_id for item in submitted if item.upload or item.outcome}
        if given:  # a student may check one notebook of several: the others are left out, not failed
            report.unchecked = [nb.title or nb.file for nb in task.parts() if nb.id not in given]
            report.criteria = [c for c in judgement.criteria if c.notebook_id in given or not c.notebook_id]
        else:
            report.criteria = judgement.criteria
        report.verdict = verdict_of(report.criteria)
        return report


def _placer(config: Config, task: TaskConfig, local: bool) -> tuple[Placer, bool]:
    """The official sandbox if it can be built and started here, else the local kernel."""
    if not local:
        try:
            placer = Placer(config)
            for sandbox in placer.sandboxes(task):
                ensure_sandbox_ready(sandbox)
            return placer, True
        except (SandboxError, ConfigError):
            pass
    return LocalPlacer(config), False


def stage_upload(paths: list[Path], tmp: Path) -> tuple[Path, list, str]:
    """The files as the official import stores them: (folder, files, German problem if unusable)."""
    archive = tmp / "moodle.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, f"Student_{PARTICIPANT}_assignsubmission_file/{path.name}")
    staging = tmp / "staging"
    staging.mkdir()
    upload = read_moodle_zip(archive, staging)[0]
    return staging / upload.moodle_id, upload.files, upload.problem


def execute_parts(config: Config, task: TaskConfig, placer: Placer, folder: Path, files: list,
                  slot: int = 0) -> list[SubmittedNotebook]:
    """Match the notebooks of an upload stored in `folder` as the import does, and run each part of the task as
    `grader grade` does (autograder.grade), one after the other in worker `slot`."""
    matches = match_notebooks(task, expected_cell_ids(config, task), folder, files, config.sandbox.max_notebook_mb)
    by_notebook = {nid: path for path, nid in matches.items()}
    companions = tuple(folder / f.path for f in files if not f.path.lower().endswith(".ipynb"))
    executor = Executor(config, placer)
    submitted = []
    for notebook in task.parts():
        path = by_notebook.get(notebook.id) if notebook.file else None
        if path is None and not (companions and task.measures_repository(notebook)):
            submitted.append(SubmittedNotebook(notebook.id, None, None))
            continue
        run = NotebookRun(task=task, notebook=notebook, notebook_file=folder / path if path else None,
                          companions=companions, base=folder)
        submitted.append(SubmittedNotebook(notebook.id, run.notebook_file, executor.execute(run, slot)))
    return submitted


def _read_public(release: Path) -> dict:
    """The public settings in `release`/selfcheck/config.json, or {} where there are none (or unreadable ones)."""
    try:
        raw = json.loads((release / SELFCHECK_FOLDER / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _without_offline_parameters(config: Config) -> Config:
    tasks = {}
    for task_id, task in config.tasks.items():
        notebooks = [nb.model_copy(update={"parameters": {k: v for k, v in nb.parameters.items()
                                                          if not (isinstance(v, str) and "{offline_dir}" in v)}})
                     for nb in task.notebooks]
        tasks[task_id] = task.model_copy(update={"notebooks": notebooks})
    return config.model_copy(update={"tasks": tasks})
