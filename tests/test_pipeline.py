"""import → grade → status through real papermill kernels in the real sandbox, with hostile notebooks mixed in."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlmodel import Session, select

from autograder.models import Execution, Run, open_database
from conftest import REPO, SANDBOXCHECK_CONFIG, TEST_ASSIGNMENTS, make_workspace, moodle_zip, notebook, sandbox_processes

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

GOOD = notebook("x = 21 * 2", "print('fertig', x)")


def test_hostile_notebooks_fail_cleanly_and_the_rest_is_graded(sandboxcheck, tmp_path):
    """Endless loop, 10 GB, spying on the grader: each fails with its reason; good work still passes."""
    secret = REPO / "tests" / "assignments" / "sandboxcheck" / "hidden" / "labels.txt"
    database = sandboxcheck.root / "grader.db"
    other = sandboxcheck.root / "submissions" / "sandboxcheck" / "2000001"
    archive = moodle_zip(tmp_path / "moodle.zip", {
        "2000001": {"check.ipynb": GOOD},
        "2000002": {"check.ipynb": notebook("while True:\n    pass", "print('fertig')")},
        "2000003": {"check.ipynb": notebook("import numpy as np\nhuge = np.ones(10 * 1024**3, dtype=np.uint8)",
                                            "print('fertig')")},
        "2000004": {"check.ipynb": notebook(
            f"open({str(secret)!r}).read()",
            f"open({str(database)!r}, 'rb').read()",
            f"import os; os.listdir({str(other)!r})",
            "print('fertig')",
        )},
        "2000005": {"check.ipynb": notebook("import os\nprint('fertig', flush=True)\nos._exit(3)")},
    })
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    result = sandboxcheck.cli("grade", "sandboxcheck", "--workers", "2")
    assert result.exit_code == 0, result.output
    status = sandboxcheck.status("sandboxcheck")

    assert status["2000001"]["verdict"] == "pass"

    loop = {c["id"]: c for c in status["2000002"]["criteria"]}
    assert status["2000002"]["verdict"] == "fail"
    assert not loop["main.no_errors"]["passed"]
    assert loop["main.no_errors"]["message"] == "Zelle 1 hat das Zeitlimit von 8 s überschritten."
    assert loop["main.finished"]["passed"]  # the cell after the endless one still ran

    memory = {c["id"]: c for c in status["2000003"]["criteria"]}
    assert status["2000003"]["verdict"] == "fail"
    assert not memory["main.executed"]["passed"]
    assert memory["main.executed"]["message"].startswith("Das Notebook hat das Speicherlimit von 768 MB überschritten")

    spy = {c["id"]: c for c in status["2000004"]["criteria"]}
    assert spy["main.finished"]["passed"] and not spy["main.no_errors"]["passed"]
    executed = _executed(sandboxcheck, "2000004")
    errors = [o["ename"] for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == ["FileNotFoundError", "FileNotFoundError", "FileNotFoundError"]
    assert "GEHEIM" not in json.dumps(executed)

    crashed = {c["id"]: c for c in status["2000005"]["criteria"]}
    assert status["2000005"]["verdict"] == "fail"
    assert crashed["main.executed"]["message"].startswith("Der Python-Kernel ist während der Ausführung abgestürzt")


def test_cell_timeout_message_names_the_cell(sandboxcheck, tmp_path):
    """An endless cell is interrupted at the cell timeout; the feedback says which cell and why."""
    archive = moodle_zip(tmp_path / "moodle.zip", {"3000001": {"check.ipynb": notebook(
        "import time\nwhile True:\n    time.sleep(0.1)", "print('fertig')")}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0
    executed = _executed(sandboxcheck, "3000001")
    endless = next(c for c in executed["cells"] if "while True" in c["source"])
    assert [o["ename"] for o in endless["outputs"] if o["output_type"] == "error"][-1] == "CellTimeoutError"
    criteria = {c["id"]: c for c in sandboxcheck.status("sandboxcheck")["3000001"]["criteria"]}
    assert criteria["main.no_errors"]["message"] == "Zelle 1 hat das Zeitlimit von 8 s überschritten."
    assert criteria["main.finished"]["passed"]


@pytest.mark.slow(cost=45)
def test_notebook_timeout_ends_an_uninterruptible_notebook(sandboxcheck, tmp_path):
    """A loop that ignores interrupts runs into the notebook's deadline: a fail with a timeout message."""
    stubborn = notebook("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.1)",
                        "print('fertig')")
    archive = moodle_zip(tmp_path / "moodle.zip", {"3000002": {"check.ipynb": stubborn}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    started = time.monotonic()
    assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0
    assert time.monotonic() - started < 60
    criteria = {c["id"]: c for c in sandboxcheck.status("sandboxcheck")["3000002"]["criteria"]}
    assert criteria["main.executed"]["message"].startswith("Das Notebook wurde nach dem Zeitlimit von 25 s abgebrochen.")


def test_second_grade_does_no_work(sandboxcheck, tmp_path):
    """Grading again finds every submission done: no sandbox runs, no new rows."""
    archive = moodle_zip(tmp_path / "moodle.zip", {"4000001": {"check.ipynb": GOOD}, "4000002": {"check.ipynb": GOOD}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    first = sandboxcheck.cli("grade", "sandboxcheck")
    assert "Graded 2 submission(s) (2 pass); 0 already graded." in first.stdout
    engine = open_database(sandboxcheck.config().database_url())
    with Session(engine) as session:
        executions = len(session.exec(select(Execution)).all())
    assert executions == 1  # two identical notebooks share one execution
    started = time.monotonic()
    second = sandboxcheck.cli("grade", "sandboxcheck")
    assert "Graded 0 submission(s) (nothing to do); 2 already graded." in second.stdout
    assert time.monotonic() - started < 10
    with Session(engine) as session:
        assert len(session.exec(select(Execution)).all()) == 1
        assert len(session.exec(select(Run)).all()) == 2


@pytest.mark.slow(cost=45)
def test_killed_grade_resumes_with_one_result_each(sandboxcheck, tmp_path):
    """SIGKILL in the middle of grading, start again: every submission ends with exactly one run."""
    slow = notebook("import time\ntime.sleep(3)", "print('fertig')")
    participants = {f"50000{i:02d}": {"check.ipynb": slow.replace("time.sleep(3)", f"time.sleep(3)  # {i}")}
                    for i in range(6)}
    archive = moodle_zip(tmp_path / "moodle.zip", participants)
    config = sandboxcheck.config_path
    config.write_text(config.read_text().replace("workers = 2", "workers = 2\nuid = 62000"))
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    command = [sys.executable, "-m", "autograder.cli", "-c", str(config), "grade", "sandboxcheck"]
    database = sandboxcheck.root / "grader.db"
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _runs(database) < 2:
        time.sleep(0.2)
    assert _runs(database) >= 2, "grading made no progress"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _runs(database) < 6, "killed too late to test anything"
    # Nothing of the killed run lives on: bwrap's --die-with-parent ends each sandbox, process by process, from
    # its top down, which takes more than a second on a loaded machine.
    deadline = time.monotonic() + 15
    while sandbox_processes(62000, 62010) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox_processes(62000, 62010) == []

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(database) as db:
        per_submission = db.execute("SELECT submission_id, COUNT(*) FROM run GROUP BY submission_id").fetchall()
    assert len(per_submission) == 6 and all(count == 1 for _, count in per_submission)
    assert set(sandboxcheck.status("sandboxcheck")[p]["verdict"] for p in participants) == {"pass"}


def test_courses_sharing_a_runs_folder_share_executions_by_content(tmp_path):
    """A second course grading the same upload into the same runs folder runs no sandbox: it records the
    execution the first made (and gets the same verdicts)."""
    shared = tmp_path / "shared-runs"
    config = SANDBOXCHECK_CONFIG + f'\n[paths]\nruns = "{shared}"\n'
    first, second = (make_workspace(tmp_path / name, config, TEST_ASSIGNMENTS) for name in ("winter", "resit"))
    archive = moodle_zip(tmp_path / "moodle.zip", {"7100001": {"check.ipynb": GOOD},
                                                   "7100002": {"check.ipynb": notebook("1/0", "print('fertig')")}})
    for workspace in (first, second):
        assert workspace.cli("import", "sandboxcheck", archive).exit_code == 0
    graded = first.cli("grade", "sandboxcheck")
    assert graded.exit_code == 0 and "sandbox" in _stages_line(graded.output)
    made = {path: path.stat().st_mtime_ns for path in shared.rglob("execution.json")}
    assert len(made) == 2

    result = second.cli("grade", "sandboxcheck")
    assert result.exit_code == 0, result.output
    assert {path: path.stat().st_mtime_ns for path in shared.rglob("execution.json")} == made  # nothing ran again
    assert "sandbox" not in _stages_line(result.output)
    verdicts = {p: s["verdict"] for p, s in second.status("sandboxcheck").items()}
    assert verdicts == {p: s["verdict"] for p, s in first.status("sandboxcheck").items()}
    assert verdicts == {"7100001": "pass", "7100002": "fail"}


def test_nbgrader_gradebook_lists_the_verdicts(sandboxcheck, tmp_path):
    """The verdicts reach nbgrader's gradebook through its API, so `nbgrader export` lists them."""
    archive = moodle_zip(tmp_path / "moodle.zip", {
        "6000001": {"check.ipynb": GOOD}, "6000002": {"check.ipynb": notebook("1/0")}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0
    course = sandboxcheck.root / "nbgrader"
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "nbgrader"), "export",
                    f"--CourseDirectory.root={course}", "--to", str(tmp_path / "grades.csv")],
                   cwd=course, env=env, check=True, capture_output=True)
    rows = (tmp_path / "grades.csv").read_text().splitlines()
    header = rows[0].split(",")
    scores = {r.split(",")[header.index("student_id")]: r.split(",")[header.index("score")] for r in rows[1:]}
    assert scores == {"6000001": "1.0", "6000002": "0.0"}

    override = sandboxcheck.cli("override", "sandboxcheck", "6000002", "--verdict", "pass",
                                "--reason", "Fehler lag an der Aufgabenstellung", "--author", "tutor")
    assert override.exit_code == 0
    assert sandboxcheck.status("sandboxcheck")["6000002"]["verdict"] == "pass"
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "nbgrader"), "export",
                    f"--CourseDirectory.root={course}", "--to", str(tmp_path / "grades2.csv")],
                   cwd=course, env=env, check=True, capture_output=True)
    assert ",6000002," in (tmp_path / "grades2.csv").read_text() and "1.0" in (tmp_path / "grades2.csv").read_text().splitlines()[2]


def _stages_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("Stages"))


def _runs(database) -> int:
    try:
        with sqlite3.connect(database, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM run").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _executed(workspace, participant: str) -> dict:
    """The executed notebook of a participant's (only) notebook run."""
    with sqlite3.connect(workspace.root / "grader.db") as db:
        (folder,) = db.execute(
            "SELECT e.folder FROM execution e JOIN runexecution re ON re.execution_id = e.id "
            "JOIN run r ON r.id = re.run_id JOIN submission s ON s.id = r.submission_id "
            "JOIN participant p ON p.id = s.participant_id WHERE p.moodle_id = ?", (participant,),
        ).fetchone()
    return json.loads((workspace.root / "runs" / folder / "executed.ipynb").read_text())
