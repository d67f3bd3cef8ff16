"""`grader grade --cluster`: the executions run on the workers of a real Dask LocalCluster (worker processes that
start real sandboxes), the rubrics and the database stay with the grader."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    SANDBOXCHECK_CONFIG, TEST_ASSIGNMENTS, Workspace, make_workspace, moodle_zip, notebook, sandbox_processes,
)

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

KEY_NAME = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def cluster():
    """A Dask cluster of two worker processes with one thread each, on this machine."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, memory_limit=0,
                      dashboard_address=None) as local, Client(local) as client:
        yield local, client


@pytest.mark.slow(cost=60)
def test_cluster_grades_as_here_and_a_killed_worker_loses_no_result(cluster, tmp_path):
    """The same submissions graded here and on the cluster, whose worker running a notebook gets SIGKILL: Dask
    runs it again elsewhere; the verdicts and criteria are those of the local run, every submission has exactly
    one run and one execution, and the half-run left no folder that looks complete."""
    local_cluster, client = cluster
    archive = moodle_zip(tmp_path / "moodle.zip", {
        "8000000": {"check.ipynb": notebook("import time\ntime.sleep(4)", "print('fertig')")},
        "8000001": {"check.ipynb": notebook("import time\ntime.sleep(4)", "1/0")},  # a pass and a fail
    })
    here = _workspace(tmp_path / "here", uid=64000)
    assert here.cli("import", "sandboxcheck", archive).exit_code == 0
    assert here.cli("grade", "sandboxcheck").exit_code == 0

    workspace = _workspace(tmp_path / "there", uid=64100)
    assert workspace.cli("import", "sandboxcheck", archive).exit_code == 0
    workers = set(client.run(os.getpid).values())
    command = [sys.executable, "-m", "autograder.cli", "-c", str(workspace.config_path), "grade", "sandboxcheck",
               "--cluster", local_cluster.scheduler_address]
    grading = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        victim, sandboxes = _worker_running_a_sandbox(workers, uid_from=64100, timeout=90)
        os.kill(victim, signal.SIGKILL)
        assert _gone(sandboxes, within=5)  # the killed worker's sandbox went with it
        _, stderr = grading.communicate(timeout=150)
    finally:
        grading.kill()
    assert grading.returncode == 0, stderr + json.dumps(workspace.status("sandboxcheck"), indent=1)[:6000]
    assert _verdicts(workspace) == _verdicts(here)
    assert {p: v["verdict"] for p, v in _verdicts(workspace).items()} == {"8000000": "pass", "8000001": "fail"}

    with sqlite3.connect(workspace.root / "grader.db") as db:
        runs = dict(db.execute("SELECT submission_id, COUNT(*) FROM run GROUP BY submission_id").fetchall())
        links = db.execute("SELECT run_id, COUNT(*) FROM runexecution GROUP BY run_id").fetchall()
        keys = [key for (key,) in db.execute("SELECT key FROM execution").fetchall()]
    assert len(runs) == 2 and set(runs.values()) == {1}
    assert len(links) == 2 and {count for _, count in links} == {1}
    assert len(keys) == len(set(keys)) == 2

    executions = workspace.root / "runs" / "executions"
    folders = [f for f in executions.glob("*/*") if f.is_dir()]
    assert {f.name for f in folders if KEY_NAME.fullmatch(f.name)} == set(keys)
    assert all((executions / key[:2] / key / "execution.json").is_file() for key in keys)
    leftovers = [f for f in folders if not KEY_NAME.fullmatch(f.name)]
    assert leftovers, "the killed run left no staging folder: it was not killed mid-run"
    assert all(not (f / "execution.json").exists() for f in leftovers)  # its outputs sit unnamed in out/


def test_unreachable_scheduler_is_one_line(tmp_path):
    """Nothing listens at the --cluster address: one line naming it, the sandbox exit code, nothing recorded."""
    with socket.socket() as probe:  # a port nobody listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workspace = _workspace(tmp_path / "course", uid=64000)
    archive = moodle_zip(tmp_path / "moodle.zip", {"8000002": {"check.ipynb": notebook("print('fertig')")}})
    assert workspace.cli("import", "sandboxcheck", archive).exit_code == 0
    result = workspace.cli("grade", "sandboxcheck", "--cluster", f"tcp://127.0.0.1:{port}")
    assert result.exit_code == 5
    assert f"cluster tcp://127.0.0.1:{port}: cannot connect to the Dask scheduler" in result.output
    assert "Traceback" not in result.output
    assert workspace.status("sandboxcheck")["8000002"]["verdict"] == "pending"


def _workspace(root: Path, uid: int) -> Workspace:
    """A sandboxcheck workspace with its own sandbox uids (tests running at the same time keep theirs)."""
    return make_workspace(root, SANDBOXCHECK_CONFIG.replace("workers = 2", f"workers = 2\nuid = {uid}"),
                          TEST_ASSIGNMENTS)


def _verdicts(workspace: Workspace) -> dict[str, dict]:
    """Each participant's verdict and criteria (id, passed, message): what a grade means, without timings."""
    return {participant: {"verdict": row["verdict"],
                          "criteria": sorted((c["id"], c["passed"], c["message"]) for c in row["criteria"])}
            for participant, row in workspace.status("sandboxcheck").items()}


def _worker_running_a_sandbox(workers: set[int], uid_from: int, timeout: float) -> tuple[int, list[int]]:
    """The pid of a worker with a sandbox process of ours below it, once one runs, and those sandbox pids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in sandbox_processes(uid_from, uid_from + 10):
            worker = next((p for p in _ancestors(pid) if p in workers), None)
            if worker is not None:
                time.sleep(1)  # the notebook is running: kill mid-run, not at its start
                below = [p for p in sandbox_processes(uid_from, uid_from + 10) if worker in _ancestors(p)]
                return worker, below
        time.sleep(0.1)
    raise AssertionError("no worker started a sandbox")


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent's pid
        found.append(pid)
    return found
