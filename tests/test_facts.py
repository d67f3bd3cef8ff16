"""Task 3's repository facts are measured by the grader's own command in a fresh sandbox, out of the notebook's
reach: a notebook that fakes everything the old in-kernel probe relied on gets the verdict of an honest one."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from conftest import REPO, clone_bundle, moodle_zip, zipped

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

SOLUTIONS = REPO / "assignments" / "task3" / "solutions"
HONEST, ATTACKER = "5000001", "5000002"

# Appended to the team's notebook as its last cell, where it runs after all their work and just before an
# in-kernel probe would. Every attack is wrapped so that the cell itself never fails ("no_errors" stays equal).
ATTACK = r'''
import functools, json, os, pathlib, stat, subprocess
JONAS = {"hash": "0123456789abcdef0123456789abcdef01234567", "author": "Jonas Müller",
         "email": "jonas.mueller@stud.example.edu", "subject": "Auswertung und Diagramm ergänzt"}
def _attempt(step):
    try:
        step()
    except Exception:
        pass
# A real commit by the missing team member, in the copy the notebook runs in.
_attempt(lambda: subprocess.run(["git", "-c", "user.name=Jonas Müller", "-c", "user.email=jonas@stud.example.edu",
                                 "-c", "safe.directory=*", "commit", "--allow-empty", "-q", "-m",
                                 "Auswertung und Diagramm ergänzt"], capture_output=True))
# Fake files: a built PDF, a README with every structure, a .gitignore.
def _files():
    pathlib.Path("task").mkdir(exist_ok=True)
    pathlib.Path("task/task1.pdf").write_bytes(b"%PDF-1.5 fake")
    pathlib.Path("README.md").write_text("# A\n\n## B\n\n- x\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                                         "[l](https://x.y)\n\n```\nc\n```\n")
    pathlib.Path(".gitignore").write_text("*.aux\n*.log\n*.synctex.gz\n*.fls\n*.fdb_latexmk\n")
_attempt(_files)
# A fake git and latexmk first on PATH.
def _fake_tools():
    fake = pathlib.Path("fakebin").resolve()
    fake.mkdir(exist_ok=True)
    (fake / "git").write_text('#!/bin/sh\n/usr/bin/git "$@"\ncase "$*" in *log*) printf "%s\\037%s\\037%s\\037%s\\036" '
                              + " ".join(f"'{JONAS[k]}'" for k in ("hash", "author", "email", "subject")) + ';; esac\n')
    (fake / "latexmk").write_text('#!/bin/sh\nfor a in "$@"; do :; done\ntouch "${a%.tex}.pdf"\nexit 0\n')
    for tool in ("git", "latexmk"):
        (fake / tool).chmod(0o755)
    os.environ["PATH"] = f"{fake}:{os.environ.get('PATH', '')}"
_attempt(_fake_tools)
def _doctored(value):
    if isinstance(value, dict) and "commits" in value:
        value = dict(value, commits=[*value["commits"], JONAS], ignored=value.get("ignored", []))
        value["latex"] = dict(value.get("latex") or {}, found=True, ok=True, errors="")
    return value
# The probe's reporting, and the functions it calls.
def _patch_report():
    import autograder.inside.probe as probe
    original = probe.report
    probe.report = lambda name, value: original(name, _doctored(value))
_attempt(_patch_report)
_real_dumps = json.dumps
json.dumps = functools.wraps(_real_dumps)(lambda value, *a, **k: _real_dumps(_doctored(value), *a, **k))
_real_popen, _real_run = subprocess.Popen, subprocess.run
def _fake_argv(argv):
    if isinstance(argv, (list, tuple)) and argv and argv[0] in ("git", "latexmk"):
        return [str(pathlib.Path("fakebin").resolve() / argv[0]), *argv[1:]]
    return argv
class _Popen(_real_popen):
    def __init__(self, args, *rest, **kwargs):
        super().__init__(_fake_argv(args), *rest, **kwargs)
subprocess.Popen = _Popen
subprocess.run = lambda args, *rest, **kwargs: _real_run(_fake_argv(args), *rest, **kwargs)
# Shows that the attack got this far and that git, in the folder the notebook ran in, now names both authors.
print("authors seen here:", sorted(set(subprocess.run(["git", "log", "--format=%an"], capture_output=True,
                                                      text=True).stdout.split("\n")) - {""}))
'''






def _append_attack(notebook: Path) -> None:
    nb = nbformat.read(str(notebook), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(ATTACK.strip()))
    nbformat.write(nb, str(notebook))


def _outcome(row: dict) -> tuple[str, list[tuple[str, bool]]]:
    return row["verdict"], sorted((c["id"], c["passed"]) for c in row["criteria"])


@pytest.mark.slow(cost=60)
def test_notebook_cannot_fake_repository_facts(course, tmp_path):
    """A notebook that commits as the missing teammate, fakes git/latexmk on PATH, writes fake files and
    replaces report(), subprocess and json.dumps gets exactly the honest team's verdict and criteria."""
    bundle = SOLUTIONS / "wrong_one_author" / "repo.bundle"
    honest = clone_bundle(bundle, tmp_path / "honest" / "team")
    attacker = clone_bundle(bundle, tmp_path / "attacker" / "team")
    _append_attack(attacker / "task3.ipynb")  # uploaded as changed, not committed: the committed state is equal
    archive = moodle_zip(tmp_path / "moodle.zip", {HONEST: {"team.zip": zipped(honest)},
                                                   ATTACKER: {"team.zip": zipped(attacker)}})
    assert course.cli("import", "task3", archive).exit_code == 0
    result = course.cli("grade", "task3")
    assert result.exit_code == 0, result.output
    status = course.status("task3")
    assert _outcome(status[HONEST])[0] == "fail"
    assert [c["id"] for c in status[HONEST]["criteria"] if not c["passed"]] == ["repo.authors"]
    assert _outcome(status[ATTACKER]) == _outcome(status[HONEST])
    authors = next(c for c in status[ATTACKER]["criteria"] if c["id"] == "repo.authors")
    assert "Jonas" not in authors["message"]
    shown = "\n".join("".join(output.get("text", "")) for path in (course.root / "runs").rglob("executed.ipynb")
                      for cell in nbformat.read(str(path), as_version=4).cells for output in cell.get("outputs", []))
    assert "'Jonas Müller', 'Lena Schmidt']" in shown, "the attack did not run to its end inside the kernel"
