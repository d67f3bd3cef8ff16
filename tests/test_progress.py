"""Live progress of `grader grade`, Ctrl-C that leaves every result recorded or pending, and the workers default."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autograder.check import Judgement
from autograder.config import TaskConfig, available_memory_mb, machine_workers
from autograder.grade import Pending
from autograder.progress import GradeProgress, duration
from autograder.sandbox import process
from conftest import moodle_zip, notebook, sandbox_processes

GOOD = notebook("x = 21 * 2", "print('fertig', x)")
SILENT = notebook("x = 21 * 2")  # never prints 'fertig': fail
UID = 62100  # uids of their own: other tests' sandboxes must not count as leftovers here


def test_plain_progress_shows_done_of_total_verdicts_and_what_runs(sandboxcheck, unsandboxed, tmp_path):
    """Not on a terminal: a head line with the workers, one line per result with the counts so far, and status
    lines (done/total, ETA, the running submissions with their time)."""
    archive = moodle_zip(tmp_path / "moodle.zip", {"7000001": {"check.ipynb": GOOD},
                                                    "7000002": {"check.ipynb": SILENT}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    result = sandboxcheck.cli("grade", "sandboxcheck", "--status-every", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()

    assert lines[0] == "grading sandboxcheck: 2 submission(s), 0 already graded, 2 worker(s) ([sandbox] workers)"
    results = [line for line in lines if line.startswith("[")]
    assert [line[:5] for line in results] == ["[1/2]", "[2/2]"]
    assert all(re.fullmatch(r"\[\d/2\] 700000\d Student 700000\d: (pass|fail) \(\d pass, \d fail, 0 error\)", line)
               for line in results), results
    assert results[-1].endswith("(1 pass, 1 fail, 0 error)")
    assert "7000002 Student 7000002: fail" in "\n".join(results)
    status = [line for line in lines if line.startswith("progress: ")]
    assert any(re.search(r"^progress: 0/2 done \(0 pass, 0 fail, 0 error\), elapsed \d+s, ETA \?; "
                         r"running: 700000\d \(\d+s\), 700000\d \(\d+s\)$", line) for line in status), status
    assert "Graded 2 submission(s) (1 fail, 1 pass); 0 already graded." in lines


@pytest.mark.sandbox
@pytest.mark.slow(cost=40)
def test_ctrl_c_stops_the_sandboxes_and_leaves_the_rest_pending(sandboxcheck, tmp_path):
    """SIGINT while one notebook sleeps: out within seconds with exit 130 and one line, no sandbox process or
    cgroup left, the finished submission recorded, the interrupted one pending; the next run grades it."""
    # The notebook sleeps until a moment chosen here: long past the interrupt, short enough for the second run.
    wake = time.time() + 30
    sleeper = notebook(f"import time\ntime.sleep(max(0, {wake} - time.time()))", "print('fertig')")
    archive = moodle_zip(tmp_path / "moodle.zip", {"8000001": {"check.ipynb": GOOD},
                                                    "8000002": {"check.ipynb": sleeper}})
    config = sandboxcheck.config_path
    config.write_text(config.read_text().replace("workers = 2", f"workers = 2\nuid = {UID}")
                      .replace("cell_timeout = 8", "cell_timeout = 60").replace("notebook_timeout = 25",
                                                                                 "notebook_timeout = 90"))
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    database = sandboxcheck.root / "grader.db"
    command = [sys.executable, "-m", "autograder.cli", "-c", str(config), "grade", "sandboxcheck"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (_verdicts(database) and sandbox_processes(UID, UID + 10)):
        time.sleep(0.2)
    assert _verdicts(database) == {"8000001": "pass"} and sandbox_processes(UID, UID + 10), "the sleeper never ran"
    assert time.time() < wake - 5, "too slow to interrupt the sleeper"

    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - interrupted < 5
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted: 1 graded, 1 left pending; run grader grade again to continue"
    assert sandbox_processes(UID, UID + 10) == []
    assert _run_groups(proc.pid) == []
    assert _verdicts(database) == {"8000001": "pass"}  # the sleeper: no run, no execution, nothing half-written
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM execution").fetchone()[0] == 1
    executions = sandboxcheck.root / "runs" / "executions"
    assert len([p for p in executions.glob("*/*")]) == 1  # no staging folder of the killed run left behind

    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "Graded 1 submission(s) (1 pass); 1 already graded." in again.stdout
    assert _verdicts(database) == {"8000001": "pass", "8000002": "pass"}


def test_terminate_all_ends_live_runs_and_refuses_new_ones_until_accepted():
    """The registry behind Ctrl-C: a live run ends at once with RunCancelled, the next is refused, then allowed."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(process.supervise(["sleep", "60"], wall_seconds=60, output_bytes=1024))
        except process.RunCancelled as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while process.live_runs() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    try:
        assert process.terminate_all() == 1
        worker.join(timeout=10)
        assert time.monotonic() - started < 2 and isinstance(outcome[0], process.RunCancelled)
        assert process.live_runs() == 0
        with pytest.raises(process.RunCancelled, match="not started"):
            process.supervise(["true"], wall_seconds=10, output_bytes=1024)
    finally:
        process.accept_runs()
    assert process.supervise(["true"], wall_seconds=10, output_bytes=1024).exit_code == 0


def test_progress_counts_eta_and_running_submissions():
    """Counts per verdict, done/total, an ETA from the pace so far, the running ones longest first."""
    now = [100.0]
    progress = GradeProgress(clock=lambda: now[0])
    first, second, third = (_pending(i) for i in (1, 2, 3))
    progress.plan(4, 1)
    progress.start(first)
    now[0] += 5
    progress.start(second)
    now[0] += 5
    progress.finish(first, Judgement("pass"))
    progress.start(third)
    now[0] += 10
    snapshot = progress.snapshot()
    assert (snapshot.done, snapshot.total, snapshot.skipped) == (1, 4, 1)
    assert [(p.participant, round(s)) for p, s in snapshot.running] == [("9000002", 15), ("9000003", 10)]
    assert snapshot.eta == pytest.approx(60.0)  # 20 s for 1 so far, 3 to go
    assert snapshot.status_line() == ("progress: 1/4 done (1 pass, 0 fail, 0 error), elapsed 20s, ETA 1m00s; "
                                      "running: 9000002 (15s), 9000003 (10s)")
    progress.leave(second)
    progress.finish(third, Judgement("provisional"))
    assert progress.snapshot().counts() == "1 pass, 0 fail, 0 error, 1 provisional"
    assert progress.snapshot().running == []
    assert [duration(s) for s in (4.4, 185, 3725)] == ["4s", "3m05s", "1h02m"]


def test_workers_default_follows_cores_and_memory_for_the_task():
    """min(cores, available memory // the task's largest memory limit), at least 1."""
    cores = len(os.sched_getaffinity(0))
    small = TaskConfig(id="t", title="T", memory_mb=64, notebooks=[{"id": "a", "file": "a.ipynb"}])
    huge = TaskConfig(id="t", title="T", memory_mb=64, notebooks=[{"id": "a", "file": "a.ipynb", "memory_mb": 10**9}])
    assert machine_workers(small) == min(cores, available_memory_mb() // 64)
    assert machine_workers(huge) == 1


def _pending(i: int) -> Pending:
    return Pending(participant=f"900000{i}", name=f"Student {i}", submission_id=i, runs={}, grading_key="k")


def _verdicts(database: Path) -> dict[str, str]:
    try:
        with sqlite3.connect(database, timeout=5) as db:
            rows = db.execute("SELECT p.moodle_id, r.verdict FROM run r JOIN submission s ON s.id = r.submission_id "
                              "JOIN participant p ON p.id = s.participant_id").fetchall()
    except sqlite3.OperationalError:
        return {}
    return dict(rows)


def _run_groups(grader_pid: int) -> list[Path]:
    """The cgroups a grader with this pid made for its runs (named notebook-grader-<pid>-<n>), wherever they are."""
    return sorted(Path("/sys/fs/cgroup").glob(f"**/notebook-grader-{grader_pid}-*"))
