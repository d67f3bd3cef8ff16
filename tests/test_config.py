"""grader.toml is validated on load: each problem is one line naming the file and the key."""

from __future__ import annotations

import pytest

from conftest import REPO, make_workspace

BASE = """
[course]
name = "Kurs"
short_name = "K"

[tasks.t1]
title = "Aufgabe"
[[tasks.t1.notebooks]]
id = "nb"
file = "nb.ipynb"
"""


@pytest.mark.parametrize("text, line", [
    (BASE + "\n[sandbox]\nbackend = \"bwrap\"\nworkerz = 2\n", "grader.toml: sandbox.workerz: unknown key"),
    (BASE.replace('id = "nb"', 'id = "nb"\ncell_timeout = "soon"'),
     "grader.toml: tasks.t1.notebooks.0.cell_timeout: Input should be a valid integer, unable to parse string as an integer"),
    (BASE.replace('title = "Aufgabe"\n', ""), "grader.toml: tasks.t1.title: missing key"),
    (BASE.replace("[course]", "[course\n"), None),
    (BASE + '\n[tasks.t1.extra]\nx = 1\n', "grader.toml: tasks.t1.extra: unknown key"),
    (BASE.replace('title = "Aufgabe"', 'title = "Aufgabe"\nruntime = "tpu"'),
     "grader.toml: tasks.t1: runtime 'tpu' is not declared under [runtimes]"),
])
def test_bad_config_is_one_line(tmp_path, text, line):
    """Unknown keys, wrong types, missing keys and broken TOML each give one line and exit code 3."""
    workspace = make_workspace(tmp_path / "w", text, REPO / "assignments")
    result = workspace.cli("status", "t1")
    assert result.exit_code == 3
    assert len(result.stderr.strip().splitlines()) == 1
    expected = f"error: {workspace.config_path}: " + (line.removeprefix("grader.toml: ") if line else "not valid TOML")
    assert result.stderr.strip().startswith(expected)


def test_unknown_task_lists_the_known_ones(tmp_path):
    """Asking for a task grader.toml does not declare names the ones it does."""
    workspace = make_workspace(tmp_path / "w", BASE, REPO / "assignments")
    result = workspace.cli("status", "task9")
    assert result.exit_code == 3
    assert result.stderr.strip() == f"error: {workspace.config_path}: no task 'task9' (known: t1)"


def test_missing_config_file(tmp_path):
    """No grader.toml: one line, exit 3."""
    from typer.testing import CliRunner

    from autograder.cli import app

    result = CliRunner().invoke(app, ["-c", str(tmp_path / "nope.toml"), "status", "t1"])
    assert result.exit_code == 3
    assert result.stderr.strip() == f"error: {tmp_path / 'nope.toml'}: config file not found"


def test_repository_config_is_valid():
    """The shipped grader.toml loads and declares its tasks with existing rubric folders."""
    from autograder.config import load_config

    config = load_config(REPO / "grader.toml")
    for task in config.tasks.values():
        assert (config.task_dir(task.id) / "rubric").is_dir(), task.id
