"""The fork backend (autograder/sandbox/fork.py, zygote.py), beyond the contract suite and the hostile corpus
that it passes like every backend (tests/test_sandbox.py, tests/test_hostile.py): what forking changes for a
notebook, and what the fork server does and does not hold."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import nbformat
import pytest

from autograder.sandbox import ExitReason, Limits, Mount, RunSpec, get_sandbox
from conftest import moodle_zip, notebook

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

UID_BASE = 61700
# What a notebook can tell about the kernel it runs in: which libraries it found loaded, its random state, its
# thread pools, its kernel's parent (the runner, the sandbox's PID 1). Each student's copy differs by a comment:
# identical notebooks would share one execution (executions are keyed by content).
PROBE_CELLS = (
    """
    import json, os, sys
    loaded = {name: name in sys.modules for name in ("pandas", "sklearn.cluster", "autograder.sandbox")}
    """,
    """
    import numpy as np, random
    from threadpoolctl import threadpool_info
    import matplotlib.pyplot as plt
    plt.plot([0, 1], [1, 0]); plt.show()
    print("PROBE " + json.dumps({"loaded": loaded, "numpy": np.random.rand(), "random": random.random(),
                                 "threads": sorted({pool["num_threads"] for pool in threadpool_info()}),
                                 "parent": os.getppid(), "cwd_first": sys.path[0] == os.getcwd()}))
    print("fertig")
    """,
)


def _probe(student: str):
    return notebook(f"# {student}", *PROBE_CELLS)


def _probes(workspace) -> list[dict]:
    found = []
    for path in (workspace.root / "runs").rglob("executed.ipynb"):
        for cell in nbformat.read(str(path), as_version=4).cells:
            for output in cell.get("outputs", []):
                for line in "".join(output.get("text", "")).splitlines():
                    if line.startswith("PROBE "):
                        found.append(json.loads(line.removeprefix("PROBE ")))
    return found


def _figures(workspace) -> int:
    return sum(1 for path in (workspace.root / "runs").rglob("executed.ipynb")
               for cell in nbformat.read(str(path), as_version=4).cells for output in cell.get("outputs", [])
               if "image/png" in output.get("data", {}))


@pytest.mark.parametrize("cpus", [1.0, 2.0])
def test_a_forked_kernel_finds_the_libraries_loaded_and_nothing_shared(sandboxcheck, tmp_path, cpus):
    """Two notebooks graded by the fork backend: each kernel was forked with pandas and scikit-learn loaded (and
    no grader module), shows its figure, draws its own random numbers, has the thread pools of its CPU share, and
    is a child of the runner; both pass as under bwrap."""
    config = sandboxcheck.config_path
    config.write_text(config.read_text().replace("workers = 2", f"workers = 2\ncpus = {cpus}\nuid = {UID_BASE}"))
    archive = moodle_zip(tmp_path / "m.zip", {student: {"check.ipynb": _probe(student)} for student in ("1000001", "1000002")})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    result = sandboxcheck.cli("grade", "sandboxcheck", "--backend", "fork")
    assert result.exit_code == 0, result.output
    assert {row["verdict"] for row in sandboxcheck.status("sandboxcheck").values()} == {"pass"}
    first, second = _probes(sandboxcheck)
    for probe in (first, second):
        assert probe["loaded"] == {"pandas": True, "sklearn.cluster": True, "autograder.sandbox": False}
        assert probe["threads"] == [int(cpus)]
        assert probe["parent"] == 1 and probe["cwd_first"]
    assert first["numpy"] != second["numpy"] and first["random"] != second["random"]
    assert _figures(sandboxcheck) == 2


def test_the_fork_server_is_replaced_when_it_dies_and_ends_with_the_backend():
    """A fork server killed between runs is started again for the next run (which succeeds); closing the backend
    ends its servers and removes their sockets."""
    sandbox = get_sandbox("fork", uid_base=UID_BASE, preload=["numpy"])
    spec = RunSpec(argv=["python", "-I", "-c", "import sys; print('numpy' in sys.modules)"], environment={},
                   limits=Limits(wall_seconds=30), warm=True)
    first = sandbox.run(spec)
    assert (first.reason, first.stdout.strip()) == (ExitReason.OK, b"True"), first.stderr_tail
    (server,) = sandbox._servers.values()
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    again = sandbox.run(spec)
    assert (again.reason, again.stdout.strip()) == (ExitReason.OK, b"True"), again.stderr_tail
    (replacement,) = sandbox._servers.values()
    assert replacement.process.pid != server.process.pid
    folder = sandbox._folder
    sandbox.close()
    assert replacement.process.poll() is not None and not folder.exists()


def test_no_run_leaves_its_data_in_the_fork_server(tmp_path):
    """The server forks at each connection before anything is read: a run's request (its mounts name a student)
    is read by the child only, so a later run, which inherits the server's memory, cannot find it there. Shown on
    the server's memory after three runs: the student's name is nowhere in it, nor is any descriptor left open."""
    marker = "Participant_1000042_Ada_Lovelace"
    folder = tmp_path / marker
    folder.mkdir()
    sandbox = get_sandbox("fork", uid_base=UID_BASE, preload=[])
    spec = RunSpec(argv=["python", "-I", "-c", "import os; print(os.listdir('/input'))"], environment={},
                   mounts=[Mount(folder, "/input")], limits=Limits(wall_seconds=30), warm=True)
    assert sandbox.run(spec).reason is ExitReason.OK
    (server,) = sandbox._servers.values()
    descriptors = len(os.listdir(f"/proc/{server.process.pid}/fd"))
    for _ in range(3):
        result = sandbox.run(spec)
        assert (result.reason, result.stdout.strip()) == (ExitReason.OK, b"[]"), result.stderr_tail
    memory = _memory(server.process.pid)
    assert server.socket.encode() in memory  # the scan sees the server's own data (its command line)
    assert marker.encode() not in memory
    assert len(os.listdir(f"/proc/{server.process.pid}/fd")) == descriptors
    sandbox.close()


def _memory(pid: int) -> bytes:
    """Every readable mapping of a process (read as root)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        for line in maps:
            bounds, permissions = line.split()[:2]
            if not permissions.startswith("r") or line.rstrip().endswith(("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in bounds.split("-"))
            try:
                memory.seek(start)
                chunks.append(memory.read(end - start))
            except OSError:
                continue
    return b"".join(chunks)
