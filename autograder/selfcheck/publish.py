"""Publish: write the public part of a task's rubric and settings into release/TASK/selfcheck/ (beside a repository).

What is public is decided by the rubric itself (autograder.rubric.is_hidden): a test that asks for `hidden_dir`
or carries `pytest.mark.hidden` is hidden. A probe or facts script is hidden when it reads the held-out inputs
(it names the folder they are mounted on, /grader/probe-data): the notebook is then published without it, and
the tests that read its report carry the marker. hidden/ and probe-data/ are never copied; nor are solutions,
tools or the instructor notebooks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder.config import Config, PathsConfig, RuntimeConfig, TaskConfig
from autograder.errors import RubricError
from autograder.execute import PROBE_DATA_DIR

SELFCHECK_FOLDER = "selfcheck"
CONFIG_FILE = "config.json"
CATALOG_FILE = "criteria.json"
TASKS_FOLDER = "tasks"


def publish_selfcheck(config: Config, task: TaskConfig, release: Path, support: Path) -> list[str]:
    """Write `support`/selfcheck/ (autograder.release.support_folder) from the task's rubric and the notebooks
    released to `release`; returns the criteria only the official grading decides."""
    task_dir = config.task_dir(task.id)
    catalog = rubric_catalog(task_dir / "rubric")
    target = support / SELFCHECK_FOLDER
    if target.exists():
        shutil.rmtree(target)
    public_dir = target / TASKS_FOLDER / task.id
    _copy_rubric(task_dir / "rubric", public_dir / "rubric", catalog)
    if (task_dir / "data").is_dir():
        shutil.copytree(task_dir / "data", public_dir / "data")
    (public_dir / "source").mkdir(parents=True)
    for notebook in task.notebooks:
        shutil.copy2(release / notebook.file, public_dir / "source" / notebook.file)
    public_task = _public_task(task, task_dir, public_dir)
    (target / CONFIG_FILE).write_text(json.dumps(_public_config(config, public_task), ensure_ascii=False, indent=1),
                                      encoding="utf-8")
    hidden = [{"criterion": e["criterion"], "title": e["title"]} for e in catalog if e["hidden"]]
    (target / CATALOG_FILE).write_text(json.dumps({"official_only": hidden}, ensure_ascii=False, indent=1),
                                       encoding="utf-8")
    return [e["criterion"] for e in hidden]


def rubric_catalog(rubric: Path) -> list[dict]:
    """Every rubric test as {criterion, hidden, title, file}, collected (not run) by pytest with our plugin."""
    with tempfile.TemporaryDirectory(prefix="grader-catalog-") as tmp:
        out = Path(tmp) / "catalog.json"
        argv = [sys.executable, "-m", "pytest", str(rubric), "--collect-only", "-q", "-p", "autograder.rubric",
                f"--grader-catalog={out}", "-p", "no:cacheprovider", f"--rootdir={rubric}", "-c", "/dev/null",
                "-W", "ignore::DeprecationWarning"]
        proc = subprocess.run(argv, cwd=rubric, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not out.exists():
            last = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
            raise RubricError(f"{rubric}: rubric could not be collected (pytest exit {proc.returncode}): {last[0]}")
        return json.loads(out.read_text(encoding="utf-8"))


def _copy_rubric(source: Path, target: Path, catalog: list[dict]) -> None:
    """Helpers and settings, and each test file with at least one public criterion (its hidden tests are
    deselected when it runs; they read hidden material only through fixtures, which is not published)."""
    public_files = {e["file"] for e in catalog if not e["hidden"]}
    target.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if not path.is_file():
            continue
        is_test = path.name.startswith("test_") and path.suffix == ".py"
        if not is_test or path.name in public_files:
            shutil.copy2(path, target / path.name)


def _public_task(task: TaskConfig, task_dir: Path, public_dir: Path) -> TaskConfig:
    """The task without its hidden scripts; the public probes and facts commands copied beside the rubric."""
    notebooks = []
    for notebook in task.notebooks:
        update: dict = {}
        for field in ("probe", "facts"):
            script = getattr(notebook, field)
            if script and reads_held_out_inputs(task_dir / script):
                update[field] = None
            elif script:
                _copy_file(task_dir / script, public_dir / script)
        if "facts" in update:
            update["keep"] = []  # kept folders exist only for the facts command to measure
        notebooks.append(notebook.model_copy(update=update))
    if task.repository is not None:
        if reads_held_out_inputs(task_dir / task.repository.facts):
            raise RubricError(f"task {task.id}: the repository's facts command reads held-out inputs; the "
                              "self-check cannot run without it")
        _copy_file(task_dir / task.repository.facts, public_dir / task.repository.facts)
    return task.model_copy(update={"notebooks": notebooks})


def reads_held_out_inputs(script: Path) -> bool:
    """Whether a probe or facts script reads the held-out inputs (probe-data/): it can reach them only at the
    folder the sandbox mounts them on, so it names that folder. Such a script is hidden material."""
    return PROBE_DATA_DIR in script.read_text(encoding="utf-8")


def _public_config(config: Config, task: TaskConfig) -> dict:
    """The settings the check needs, as JSON: course, sandbox limits, runtime kinds (no images), this task."""
    runtimes = {name: RuntimeConfig(kind=runtime.kind) for name, runtime in config.runtimes.items()}
    paths = PathsConfig(assignments=Path(TASKS_FOLDER))
    public = config.model_copy(update={"paths": paths, "runtimes": runtimes, "tasks": {task.id: task}})
    return public.model_dump(mode="json", exclude={"root", "source", "moodle", "scale"})


def _copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
