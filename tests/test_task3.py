"""Task 3 as the course sets it: the upload is the team's repository, with or without task3.ipynb.

grader.toml says per task whether the notebook belongs to it ([[tasks.task3.notebooks]] with the repository's
id). Without it the repository alone is graded: the facts command runs over the upload and only the
repository's criteria are reported. With it, a repository handed in without the notebook is still measured:
the notebook's criteria fail, the repository's are judged (a fail, not an error).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, make_workspace, moodle_zip, zipped

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

SOLUTIONS = REPO / "assignments" / "task3" / "solutions"
NOTEBOOK_TABLE = re.compile(r'(?ms)^\[\[tasks\.task3\.notebooks\]\]\n.*?(?=^\[)')
NOTEBOOK_CRITERIA = {"repo.submitted", "repo.outputs", "repo.executed", "repo.formulas", "repo.history_shown",
                     "repo.no_errors"}
REFERENCE, ONE_AUTHOR, BUNDLE_ONLY = "1000001", "1000002", "1000003"


def _clone(bundle: Path, target: Path, without_notebook: bool = False) -> Path:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(target.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "Lena Schmidt", "GIT_AUTHOR_EMAIL": "l@example.edu",
           "GIT_COMMITTER_NAME": "Lena Schmidt", "GIT_COMMITTER_EMAIL": "l@example.edu"}
    subprocess.run(["git", "clone", "-q", str(bundle), str(target)], env=env, check=True, capture_output=True)
    if without_notebook:  # the course's task never asked for one: the repository holds none
        subprocess.run(["git", "rm", "-q", "task3.ipynb"], cwd=target, env=env, check=True, capture_output=True)
        subprocess.run(["git", "commit", "-q", "-m", "Notebook entfernt, gehört nicht zur Aufgabe"], cwd=target,
                       env=env, check=True, capture_output=True)
    return target




def _failed(row: dict) -> list[str]:
    return sorted(c["id"] for c in row["criteria"] if not c["passed"])


def _repository_only_config() -> str:
    """The course's grader.toml with task 3 graded from the repository alone (no notebook configured)."""
    config = NOTEBOOK_TABLE.sub("", (REPO / "grader.toml").read_text(encoding="utf-8"))
    assert "[[tasks.task3.notebooks]]" not in config
    # Without the notebook its criteria are never reported, so their marking goes too (grader.toml says so).
    return "\n".join(line for line in config.splitlines()
                      if not any(line.startswith(f'"{criterion}" =') for criterion in NOTEBOOK_CRITERIA))


@pytest.mark.slow(cost=60)
def test_repository_alone_is_the_upload_without_a_notebook_configured(tmp_path):
    """Configured without the notebook: a repository (ZIP with .git, or a bundle alone) is graded by its facts;
    no notebook criterion is reported, and a mistake in the repository still fails its criterion."""
    course = make_workspace(tmp_path / "course", _repository_only_config(), REPO / "assignments")
    reference = _clone(SOLUTIONS / "reference" / "repo.bundle", tmp_path / "a" / "team", without_notebook=True)
    one_author = _clone(SOLUTIONS / "wrong_one_author" / "repo.bundle", tmp_path / "b" / "team")
    archive = moodle_zip(tmp_path / "moodle.zip", {
        REFERENCE: {"team.zip": zipped(reference)},
        ONE_AUTHOR: {"team.zip": zipped(one_author)},
        BUNDLE_ONLY: {"team.bundle": (SOLUTIONS / "reference" / "repo.bundle").read_bytes()},
    })
    assert course.cli("import", "task3", archive).exit_code == 0
    result = course.cli("grade", "task3")
    assert result.exit_code == 0, result.output
    status = course.status("task3")
    for participant in (REFERENCE, BUNDLE_ONLY):
        row = status[participant]
        assert row["verdict"] == "pass", (participant, _failed(row))
        ids = {c["id"] for c in row["criteria"]}
        assert {"repo.repository", "repo.history", "repo.authors", "repo.latex", "repo.readme"} <= ids
        assert not ids & NOTEBOOK_CRITERIA, ids
    assert status[ONE_AUTHOR]["verdict"] == "fail"
    assert _failed(status[ONE_AUTHOR]) == ["repo.authors"]


@pytest.mark.slow(cost=40)
def test_repository_without_the_configured_notebook_is_judged(course, tmp_path):
    """Configured with the notebook: a bundle uploaded without it fails the notebook's criteria only; the
    repository's criteria are judged from its facts (a fail for the student, not an error)."""
    archive = moodle_zip(tmp_path / "moodle.zip", {
        BUNDLE_ONLY: {"team.bundle": (SOLUTIONS / "reference" / "repo.bundle").read_bytes()},
    })
    assert course.cli("import", "task3", archive).exit_code == 0
    result = course.cli("grade", "task3")
    assert result.exit_code == 0, result.output
    row = course.status("task3")[BUNDLE_ONLY]
    assert row["verdict"] == "fail"
    failed = _failed(row)
    assert "repo.submitted" in failed and set(failed) <= NOTEBOOK_CRITERIA, failed
    passed = {c["id"] for c in row["criteria"] if c["passed"]}
    assert {"repo.repository", "repo.history", "repo.authors", "repo.latex", "repo.readme"} <= passed


def _with_tex(bundle: Path, target: Path, edit) -> Path:
    """A clone of a solution whose task1.tex is changed by `edit` and committed by its second author."""
    tree = _clone(bundle, target)
    tex = tree / "task" / "task1.tex"
    tex.write_text(edit(tex.read_text(encoding="utf-8")), encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(target.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "Jonas Müller", "GIT_AUTHOR_EMAIL": "j@example.edu",
           "GIT_COMMITTER_NAME": "Jonas Müller", "GIT_COMMITTER_EMAIL": "j@example.edu"}
    subprocess.run(["git", "commit", "-q", "-am", "Paket für die Aufzählungen ergänzt"], cwd=tree, env=env,
                   check=True, capture_output=True)
    return tree


@pytest.mark.slow(cost=50)
def test_latex_feedback_names_the_first_error_and_a_missing_package(course, tmp_path):
    """A package the runtime lacks is the grader's gap (the criterion is `error`, the package named for staff);
    a real error of the document is the student's, said in German with its line; messages keep their lines."""
    bundle = SOLUTIONS / "reference" / "repo.bundle"
    missing = _with_tex(bundle, tmp_path / "a" / "team",
                        lambda tex: tex.replace("\\usepackage{amsmath}", "\\usepackage{amsmath}\n\\usepackage{gibtesnicht}"))
    broken = _with_tex(bundle, tmp_path / "b" / "team", lambda tex: tex.replace("\\end{itemize}\n\\end{document}",
                                                                              "\\end{document}"))
    archive = moodle_zip(tmp_path / "moodle.zip", {REFERENCE: {"team.zip": zipped(missing)},
                                                   ONE_AUTHOR: {"team.zip": zipped(broken)}})
    assert course.cli("import", "task3", archive).exit_code == 0
    graded = course.cli("grade", "task3")
    assert graded.exit_code == 10, graded.output  # GRADED_WITH_ERRORS: the runtime's gap is the grader's fault
    status = course.status("task3")
    assert status[REFERENCE]["verdict"] == "error"
    latex = next(c for c in status[REFERENCE]["criteria"] if c["id"] == "repo.latex")
    assert latex["state"] == "error" and "gibtesnicht.sty" in latex["detail"], latex

    assert status[ONE_AUTHOR]["verdict"] == "fail" and _failed(status[ONE_AUTHOR]) == ["repo.latex"]
    message = next(c for c in status[ONE_AUTHOR]["criteria"] if c["id"] == "repo.latex")["message"]
    assert "Der erste Fehler steht in Zeile" in message and "„itemize“ wird nicht geschlossen" in message, message
    assert "^^M" not in message and "Emergency stop" not in message
    assert len(message.splitlines()) >= 2


def test_feedback_keeps_line_breaks():
    """Moodle shows feedback as HTML: a message's lines become <br>, each line escaped."""
    from autograder.feedback import _lines

    assert _lines("Zeile 1: <a>\nLaTeX meldet: x & y\n") == "Zeile 1: &lt;a&gt;<br>LaTeX meldet: x &amp; y"


@pytest.mark.slow(cost=200)
def test_every_solution_graded_from_the_repository_alone(tmp_path):
    """Every task-3 solution, graded without the notebook configured, gets its expected.toml result less the
    notebook's criteria: a solution whose only mistake is in the notebook (its formulas) passes."""
    import json

    course = make_workspace(tmp_path / "course", _repository_only_config(), REPO / "assignments")
    out = tmp_path / "moodle"
    assert course.cli("sample", "task3", "--out", out).exit_code == 0
    assert course.cli("import", "task3", next(out.glob("*.zip"))).exit_code == 0
    result = course.cli("grade", "task3")
    assert result.exit_code == 0, result.output
    status = course.status("task3")
    expected = json.loads((out / "participants.json").read_text(encoding="utf-8"))
    assert len(expected) == len(list(SOLUTIONS.glob("*/expected.toml")))
    problems = []
    for participant, want in expected.items():
        failed = sorted(set(want["failed"]) - NOTEBOOK_CRITERIA)
        verdict = "fail" if failed else "pass"
        got = status[participant]
        reported = {c["id"] for c in got["criteria"]}
        if got["verdict"] != verdict or _failed(got) != failed or reported & NOTEBOOK_CRITERIA:
            problems.append(f"{want['solution']}: {got['verdict']} {_failed(got)}, expected {verdict} {failed}")
    assert not problems, "\n".join(problems)
    assert status[next(p for p, w in expected.items() if w["solution"] == "wrong_formula_error")]["verdict"] == "pass"
