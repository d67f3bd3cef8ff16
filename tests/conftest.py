"""Shared fixtures: throwaway grader workspaces, notebooks built on the fly, and the real CLI in-process."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from typer.testing import CliRunner

from autograder.cli import app
from autograder.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
TEST_ASSIGNMENTS = REPO / "tests" / "assignments"
# The ordinary account test_privilege_split makes (once, and keeps) to grade without root.
TEST_ACCOUNT = "grader-test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Costliest tests first: with `-n 2 --maxschedchunk 1` each worker takes the next test when it is free,
    so the long real-model runs overlap with everything else instead of starting last."""
    def cost(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return float(marker.kwargs.get("cost", 60)) if marker else 0.0

    items.sort(key=cost, reverse=True)  # stable: equal costs keep their order


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's GRADER_* variables out of the tests."""
    for key in list(os.environ):
        if key.startswith("GRADER_"):
            monkeypatch.delenv(key)


@dataclass
class Workspace:
    """A course folder of its own: grader.toml, database, submissions, runs, gradebook."""

    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "grader.toml"

    def config(self) -> Config:
        return load_config(self.config_path)

    def cli(self, *args: str):
        """Run `grader -c <this workspace> ARGS` in-process; returns click's Result."""
        return CliRunner().invoke(app, ["-c", str(self.config_path), *map(str, args)], catch_exceptions=False)

    def status(self, task: str) -> dict[str, dict]:
        result = self.cli("status", task, "--json")
        assert result.exit_code == 0, result.output
        return {row["participant"]: row for row in json.loads(result.stdout)}


def make_workspace(root: Path, config_text: str, assignments: Path) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    (root / "grader.toml").write_text(textwrap.dedent(config_text), encoding="utf-8")
    (root / "assignments").symlink_to(assignments)
    offline = REPO / ".offline-data"
    if offline.is_dir():
        (root / ".offline-data").symlink_to(offline)
    return Workspace(root)


@pytest.fixture
def course(tmp_path: Path) -> Workspace:
    """A workspace with the course's real grader.toml and assignments."""
    return make_workspace(tmp_path / "course", (REPO / "grader.toml").read_text(encoding="utf-8"), REPO / "assignments")


SANDBOXCHECK_CONFIG = """
[course]
name = "Sandbox checks"
short_name = "SBX"

[sandbox]
workers = 2

[tasks.sandboxcheck]
title = "Sandbox-Prüfung"
cell_timeout = 8
notebook_timeout = 25
memory_mb = 768

[[tasks.sandboxcheck.notebooks]]
id = "main"
file = "check.ipynb"
title = "Prüfnotebook"
"""


@pytest.fixture
def unsandboxed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox's test double, for tests about something else (progress lines, say): `grader grade` run in this
    process executes through the self-check's LocalSandbox, the same seam with the real runner, papermill and
    kernel but no isolation and no root, so such a test belongs to `make test-fast`. Only for the test's own
    notebooks, never for hostile ones."""
    from autograder import placement
    from autograder.selfcheck.local import LocalPlacer

    monkeypatch.setattr(placement, "Placer", LocalPlacer)


@pytest.fixture
def sandboxcheck(tmp_path: Path) -> Workspace:
    """A workspace with one tiny task whose rubric only asks that the notebook printed 'fertig'."""
    return make_workspace(tmp_path / "course", SANDBOXCHECK_CONFIG, TEST_ASSIGNMENTS)


def notebook(*cells: str) -> str:
    """A notebook (JSON text) whose code cells are the given sources."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(source).strip()) for source in cells]
    return nbformat.writes(nb)


def moodle_zip(path: Path, submissions: dict[str, dict[str, str | bytes]], names: dict[str, str] | None = None) -> Path:
    """A Moodle 4.1+ 'Download all submissions' ZIP: {participant id: {file name: content}}."""
    import zipfile

    names = names or {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for participant, files in submissions.items():
            label = names.get(participant, f"Student {participant}")
            for name, content in files.items():
                zf.writestr(f"{label}_{participant}_assignsubmission_file/{name}", content)
    return path


def clone_bundle(bundle: Path, target: Path) -> Path:
    """A working copy of one of our own, trusted solution bundles (git never runs on student data on the host)."""
    import subprocess

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(target.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null"}
    subprocess.run(["git", "clone", "-q", str(bundle), str(target)], env=env, check=True, capture_output=True)
    subprocess.run(["git", "remote", "remove", "origin"], cwd=target, env=env, check=True, capture_output=True)
    return target


def zipped(folder: Path) -> bytes:
    """A folder as the ZIP a team uploads (with .git, when the folder holds one)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def sandbox_processes(uid_from: int, uid_to: int) -> list[int]:
    """PIDs of live processes running as a sandbox uid in [uid_from, uid_to)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                uid = int((entry / "status").read_text().split("Uid:")[1].split()[0])
            except (OSError, IndexError):
                continue
            if uid_from <= uid < uid_to:
                found.append(int(entry.name))
    return found
