"""`grader check`: the student's self-check agrees with the official grading on every public criterion, runs
with the hidden material absent, and tells a student in German what to fix.

The agreement test shares each execution between both sides: a solution's upload runs once in the sandbox,
then the official rubric (grader.toml, assignments/) and the published public rubric (release/TASK/selfcheck/,
no hidden folders) judge the same execution folder. tests/test_solutions.py compares every solution of every
task so, on the executions `grader verify` made; this test goes through the check's own path (staging the
student's files, executing them as `grader check` does) for a representative subset: the reference and one
typical mistake of task 4, task 3 (uploaded as `grader sample` uploads them) and task 5's clustering notebook.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from typer.testing import CliRunner

from autograder.check import judge
from autograder.config import load_config
from autograder.placement import Placer
from autograder.ingest import read_moodle_zip
from autograder.sample import build_sample
from autograder.cli import app
from autograder.selfcheck.publish import CATALOG_FILE, SELFCHECK_FOLDER, reads_held_out_inputs
from autograder.selfcheck.run import execute_parts, load_public_config
from autograder.selfcheck.upload import view_upload
from conftest import REPO, Workspace, make_workspace

CONFIG = load_config(REPO / "grader.toml")
OFFLINE = REPO / ".offline-data"
SOLUTIONS = REPO / "assignments" / "task5" / "solutions"
# The representative subset (see the module docstring): the reference and one typical mistake per task.
TASK4_CASES = ("reference", "wrong_scatter_one_colour")
TASK3_CASES = ("reference", "wrong_commit_messages")
# Hidden material by name: nothing under these may reach a release.
HIDDEN_PARTS = ("hidden", "probe-data")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """`grader release TASK` in a course workspace shared by this module's tests, each task released once;
    returns the folder holding selfcheck/ (beside the repository for task 3)."""
    course = make_workspace(tmp_path_factory.mktemp("released") / "course",
                            (REPO / "grader.toml").read_text(encoding="utf-8"), REPO / "assignments")
    done: dict[str, Path] = {}

    def release(task: str) -> Path:
        if task not in done:
            result = course.cli("release", task)
            assert result.exit_code == 0, result.output
            beside = course.root / "release" / f"{task}-selfcheck"
            done[task] = beside if beside.is_dir() else course.root / "release" / task
        return done[task]

    return release


def _moodle_uploads(course: Workspace, task: str, chosen: tuple[str, ...], tmp: Path) -> list[tuple[str, Path, list]]:
    """(solution, stored folder, files) of the chosen solutions, uploaded as `grader sample` uploads them (task 3:
    the repository zipped with .git, or as a bundle) and read back as the import reads them."""
    config = course.config()
    archive, _ = build_sample(config, config.task(task), tmp / "moodle")
    who = json.loads((tmp / "moodle" / "participants.json").read_text(encoding="utf-8"))
    staging = tmp / "staging"
    staging.mkdir()
    uploads = read_moodle_zip(archive, staging)
    return [(who[u.moodle_id]["solution"], staging / u.moodle_id, u.files) for u in uploads
            if who[u.moodle_id]["solution"] in chosen]


def _clustering_uploads(tmp: Path) -> list[tuple[str, Path, list]]:
    """Task 5's clustering notebook alone, from the reference and from solutions whose mistake is in it."""
    from autograder.ingest import UploadedFile

    uploads = []
    for solution in ("reference", "wrong_noise_dropped"):
        folder = tmp / solution
        folder.mkdir()
        shutil.copy2(SOLUTIONS / solution / "task5_clustering.ipynb", folder / "task5_clustering.ipynb")
        size = (folder / "task5_clustering.ipynb").stat().st_size
        uploads.append((solution, folder, [UploadedFile("task5_clustering.ipynb", "", size)]))
    return uploads


@pytest.mark.sandbox
@pytest.mark.slow(cost=90)
def test_check_agrees_with_official_grading(course, released, tmp_path):
    """On each execution, every public criterion has the official grading's state, message and marking."""
    config = course.config()
    placer = Placer(config)
    cases = []
    for task, uploads in (("task4", lambda t: _moodle_uploads(course, "task4", TASK4_CASES, t)),
                          ("task3", lambda t: _moodle_uploads(course, "task3", TASK3_CASES, t)),
                          ("task5", _clustering_uploads)):
        release = released(task)
        public = load_public_config(release, offline_data=OFFLINE, runs=tmp_path / "public-runs")
        hidden = {e["criterion"] for e in json.loads((release / SELFCHECK_FOLDER / CATALOG_FILE).read_text())
                  ["official_only"]}
        (tmp_path / task).mkdir()
        cases += [(task, public, hidden, *upload) for upload in uploads(tmp_path / task)]

    def compare(case, slot):
        task, public, hidden, solution, folder, files = case
        submitted = execute_parts(config, config.task(task), placer, folder, files, slot)
        official = judge(config, config.task(task), submitted)
        checked = judge(public, public.task(task), submitted, public_only=True)
        given = {item.notebook_id for item in submitted if item.outcome is not None}
        want = {c.id: (c.state, c.message, c.required) for c in official.criteria
                if c.notebook_id in given and c.id not in hidden}
        got = {c.id: (c.state, c.message, c.required) for c in checked.criteria if c.notebook_id in given}
        return f"{task}/{solution}", want, got

    with ThreadPoolExecutor(max_workers=2) as pool:  # two sandboxes at once, each under its own uid slot
        results = list(pool.map(compare, cases, [i % 2 for i in range(len(cases))]))
    for name, want, got in results:
        assert got == want, name
        if "/wrong_" in name:  # the mistake is a public criterion: the check must show it failing
            assert any(state.value == "fail" for state, _, _ in got.values()), name
    assert len(results) == 2 + 2 + 2


@pytest.mark.sandbox
@pytest.mark.slow(cost=60)
def test_student_checks_fixes_and_checks_again_without_hidden_material(released, tmp_path, monkeypatch):
    """A student's copy of the release holds nothing hidden; a mistake gets a German failing message (sandbox),
    the fix passes (plain local kernel, with its German note). The check runs in that copy alone, with no
    grader.toml and no course folder (hidden/) in reach."""
    student = tmp_path / "student" / "task5"
    shutil.copytree(released("task5"), student)
    shown = [p for p in student.rglob("*") if any(part in HIDDEN_PARTS for part in p.parts)]
    assert not shown, shown
    scripts = list((student / SELFCHECK_FOLDER / "tasks" / "task5").rglob("probes/*.py"))
    assert not [p.name for p in scripts if reads_held_out_inputs(p)]
    assert "query_probe.py" not in [p.name for p in scripts]  # it asks the hidden queries
    monkeypatch.chdir(student)
    notebook = student / "task5_clustering.ipynb"

    def check(*options: str):
        return CliRunner().invoke(app, ["check", "task5", str(notebook), "--offline-data", str(OFFLINE), *options],
                                  catch_exceptions=False)

    shutil.copy2(SOLUTIONS / "wrong_noise_dropped" / "task5_clustering.ipynb", notebook)
    result = check()
    assert result.exit_code == 1, result.output  # ExitCode.FINDINGS
    assert "[NICHT bestanden] clustering.dbscan_noise" in result.output
    assert "Vermutlich haben Sie die Rauschpunkte (Label -1) weggelassen" in result.output
    assert "clustering.dbscan_moons: DBSCAN trennt die beiden Halbmonde" in result.output  # official only
    assert "FEHLER" not in result.output
    assert "Keine Sandbox verfügbar" not in result.output  # root and bubblewrap here: the official sandbox

    # The fix, checked as on a laptop without root: the plain local kernel, and the check says so.
    shutil.copy2(SOLUTIONS / "reference" / "task5_clustering.ipynb", notebook)
    result = check("--local")
    assert result.exit_code == 0, result.output
    assert "Grenzen für Speicher, Prozesse und Rechenzeit der offiziellen Bewertung werden dabei nicht " \
        "durchgesetzt" in result.output
    assert "[bestanden] clustering.dbscan_noise" in result.output
    assert "NICHT bestanden" not in result.output
    assert "Alle öffentlichen Pflichtkriterien sind erfüllt." in result.output


def test_a_test_asking_for_hidden_dir_is_hidden_and_not_run(tmp_path):
    """Asking for `hidden_dir` makes a rubric test hidden: published as official-only, deselected when the
    self-check runs the rubric, so the hidden folder is never opened."""
    from autograder.selfcheck.publish import rubric_catalog

    rubric = tmp_path / "rubric"
    rubric.mkdir()
    (rubric / "test_leak.py").write_text(
        "import pytest\npytestmark = pytest.mark.notebook('main')\n\n"
        "def test_public(nb):\n    \"\"\"Öffentlich\"\"\"\n    assert nb.available, 'nicht ausgeführt'\n\n"
        "def test_reads_labels(hidden_dir):\n    assert (hidden_dir / 'labels.csv').read_text()\n",
        encoding="utf-8")
    assert [(e["criterion"], e["hidden"]) for e in rubric_catalog(rubric)] == [
        ("main.public", False), ("main.reads_labels", True)]

    executed = tmp_path / "execution"
    executed.mkdir()
    (executed / "executed.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()), encoding="utf-8")
    manifest, report = tmp_path / "manifest.json", tmp_path / "report.json"
    manifest.write_text(json.dumps({"task": "t", "task_dir": str(tmp_path / "task"), "settings": {},
                                    "notebooks": {"main": {"file": "a.ipynb", "folder": str(executed)}}}))
    proc = subprocess.run([sys.executable, "-m", "pytest", str(rubric), "-p", "autograder.rubric", "-q",
                           f"--grader-manifest={manifest}", f"--grader-report={report}", "--grader-public-only",
                           "-p", "no:cacheprovider", f"--rootdir={rubric}", "-c", "/dev/null"],
                          capture_output=True, text=True, cwd=rubric)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(c["id"], c["state"]) for c in json.loads(report.read_text())] == [("main.public", "pass")]


def _notebook_file(path: Path, with_outputs: bool) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print('hallo')")
    if with_outputs:
        cell.outputs = [nbformat.v4.new_output("stream", text="hallo\n")]
        cell.execution_count = 1
    nb.cells = [cell]
    nbformat.write(nb, path)
    return path


def test_upload_warnings_name_what_moodle_gets(tmp_path):
    """Renamed notebook, no outputs, too large, a type Moodle rejects, a missing notebook: each one warning."""
    task = CONFIG.task("task5")
    renamed = _notebook_file(tmp_path / "clustering_final.ipynb", with_outputs=False)
    big = _notebook_file(tmp_path / "task5_query.ipynb", with_outputs=True)
    big.write_bytes(big.read_bytes() + b" " * (2 * 1024 * 1024))
    pdf = tmp_path / "notes.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    view = view_upload(task, [renamed, big, pdf], max_notebook_mb=1)
    assert [name for name, _ in view.files] == ["clustering_final.ipynb", "task5_query.ipynb", "notes.pdf"]
    text = "\n".join(view.warnings)
    assert "„clustering_final.ipynb“ heißt nicht wie in der Aufgabe" in text
    assert "„clustering_final.ipynb“ hat keine Ausgaben" in text
    assert "„task5_query.ipynb“ ist mit 2 MB größer als die 1 MB" in text
    assert "„notes.pdf“: Moodle nimmt nur .ipynb an" in text
    assert "Nicht dabei: „task5_clustering.ipynb“, „task5_finetune.ipynb“" in text


def test_repository_zip_without_git_is_warned(tmp_path):
    """Task 3: a ZIP without the .git folder is named; one with it is not."""
    task = CONFIG.task("task3")
    without, with_git = tmp_path / "team.zip", tmp_path / "team-git.zip"
    with zipfile.ZipFile(without, "w") as zf:
        zf.writestr("team/task3.ipynb", "{}")
    with zipfile.ZipFile(with_git, "w") as zf:
        zf.writestr("team/task3.ipynb", "{}")
        zf.writestr("team/.git/HEAD", "ref: refs/heads/main\n")
    assert any("enthält keinen Ordner .git" in w for w in view_upload(task, [without], 20).warnings)
    assert not view_upload(task, [with_git], 20).warnings
