"""The execution key: what can change a notebook's run changes it, what only changes where or how fast it runs
(workers, uids, the notebook's title) does not. No sandbox is started: a key needs only the backend's name."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import SANDBOXCHECK_CONFIG, TEST_ASSIGNMENTS, Workspace, make_workspace, notebook

from autograder.config import Config
from autograder.execute import Executor, NotebookRun
from autograder.placement import Placer
from autograder.sandbox import RunResult, RunSpec


class _NoRun:
    """A Sandbox that names itself and its runtime and refuses to run: computing a key must not run anything."""

    name = "bwrap"

    def runtime_id(self) -> str:
        return "venv:test"

    def run(self, spec: RunSpec) -> RunResult:
        raise AssertionError("computing a key started a sandbox")


class _Placer(Placer):
    def sandbox(self, name, runtime, backend):
        return _NoRun()


def _key(config: Config, upload: Path, executor: Executor | None = None) -> str:
    task = config.task("sandboxcheck")
    run = NotebookRun(task=task, notebook=task.notebook("main"), notebook_file=upload, base=upload.parent)
    return (executor or Executor(config, _Placer(config))).key(run)


def _workspace(tmp_path: Path, name: str, config_text: str = SANDBOXCHECK_CONFIG):
    assignments = tmp_path / "assignments"
    if not assignments.exists():
        shutil.copytree(TEST_ASSIGNMENTS / "sandboxcheck", assignments / "sandboxcheck")
        (assignments / "sandboxcheck" / "data").mkdir(exist_ok=True)
        (assignments / "sandboxcheck" / "data" / "points.csv").write_text("x,y\n1,2\n")
    if (tmp_path / name).exists():
        return Workspace(tmp_path / name)
    return make_workspace(tmp_path / name, config_text, assignments)


def test_key_ignores_workers_uid_and_title_and_follows_the_notebook(tmp_path):
    """More workers, other uids or a new notebook title reuse every execution; other notebook bytes or a
    sandbox limit that changes a run do not."""
    upload = tmp_path / "upload" / "check.ipynb"
    upload.parent.mkdir()
    upload.write_text(notebook("print('fertig')"))
    base = _key(_workspace(tmp_path, "base").config(), upload)

    changed = (SANDBOXCHECK_CONFIG.replace("workers = 2", "workers = 5\nuid = 63000")
               .replace('title = "Prüfnotebook"', 'title = "Ein anderer Titel"'))
    assert _key(_workspace(tmp_path, "retitled", changed).config(), upload) == base

    limited = SANDBOXCHECK_CONFIG.replace("workers = 2", "workers = 2\npids = 64")
    assert _key(_workspace(tmp_path, "limited", limited).config(), upload) != base

    other = tmp_path / "other" / "check.ipynb"
    other.parent.mkdir()
    other.write_text(notebook("print('fertig')  # anders"))
    assert _key(_workspace(tmp_path, "base").config(), other) != base


def test_key_sees_a_changed_data_file_within_one_executor(tmp_path):
    """Data is hashed once per run, yet an Executor that lives on (a Dask worker's) notices an edited file."""
    upload = tmp_path / "upload" / "check.ipynb"
    upload.parent.mkdir()
    upload.write_text(notebook("print('fertig')"))
    config = _workspace(tmp_path, "base").config()
    executor = Executor(config, _Placer(config))
    first = _key(config, upload, executor)
    assert _key(config, upload, executor) == first
    (tmp_path / "assignments" / "sandboxcheck" / "data" / "points.csv").write_text("x,y\n1,30\n")  # another size: mtimes are coarse
    assert _key(config, upload, executor) != first
