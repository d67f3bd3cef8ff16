"""The hostile corpus (tests/hostile/): every notebook gets its expected verdict and message, under every
backend; the grader survives; nothing on the host outside the run's own folder changes; no process and no
cgroup of a sandbox is left behind; a server on the host's loopback never hears from a sandbox."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import threading
import tomllib
from pathlib import Path

import nbformat
import pytest

from autograder.sandbox import cgroups
from conftest import REPO, TEST_ACCOUNT, TEST_ASSIGNMENTS, make_workspace, moodle_zip, sandbox_processes

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

CORPUS = REPO / "tests" / "hostile"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))
LOOPBACK_PORT = 18765  # connect_loopback.ipynb knocks here
UID_BASE = 63000
BACKENDS = ["bwrap", "fork"] + (["podman"] if shutil.which("podman") else [])
# The timeouts below suit a real machine. A much slower one (user-mode Linux in tests/test_cgroup2_vm.py: one CPU,
# forks and page faults 10-20 times slower) scales them, so that each notebook still ends by its own limit
# (memory, processes, disk) rather than by the clock.
TIME_SCALE = float(os.environ.get("HOSTILE_TIME_SCALE", "1"))
CELL_TIMEOUT = round(10 * TIME_SCALE)  # expected.toml's messages say {cell_timeout}

HOSTILE_CONFIG = f"""
[course]
name = "Hostile corpus"
short_name = "HOSTILE"

[sandbox]
workers = 2
uid = {UID_BASE}
pids = 128
scratch_mb = 256
output_mb = 16
max_images = 100
max_notebook_mb = 20

[tasks.hostile]
title = "Feindliche Abgaben"
cell_timeout = {CELL_TIMEOUT}
notebook_timeout = {round(40 * TIME_SCALE)}
memory_mb = 1024

[[tasks.hostile.notebooks]]
id = "main"
file = "check.ipynb"
title = "Notebook"
"""


def _huge_notebook() -> str:
    """50 MB of embedded image data, as if a student pasted pictures into Markdown; generated here rather than
    committed. Random bytes, so that it does not compress like a ZIP bomb."""
    blob = base64.b64encode(os.urandom(37 * 1024 * 1024)).decode()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"![Bild](data:image/png;base64,{blob})"),
                nbformat.v4.new_code_cell("print('fertig')")]
    return nbformat.writes(nb)


def _snapshot(root: Path, skip: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    state = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            state[path] = (info.st_size, info.st_mtime_ns)
    return state


ACCOUNT_FILES = ("passwd", "group", "shadow", "gshadow")


def _etc_snapshot() -> dict[str, object]:
    """/etc as _snapshot sees it, except that the account files are compared by their content without the test
    account's lines, and their backups (`passwd-`, ...) not at all: test_privilege_split may add that account
    while this test runs on the other worker, and `useradd` rewrites all eight files."""
    accounts = {f"/etc/{name}{suffix}" for name in ACCOUNT_FILES for suffix in ("", "-")}
    state: dict[str, object] = {path: value for path, value in _snapshot(Path("/etc"), ()).items()
                                if path not in accounts}
    for name in ACCOUNT_FILES:
        path = Path("/etc") / name
        if path.is_file():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            state[str(path)] = [line for line in lines if not line.startswith(f"{TEST_ACCOUNT}:")]
    return state


def _leftover_groups() -> list[Path]:
    """Run groups of this process still there: below a v1 controller's group, or next to the grader on v2."""
    found = cgroups.hierarchy()
    roots = {Path("/sys/fs/cgroup"), *([found.base] if found.base else [])}
    return [g for root in roots for depth in range(4) for g in root.glob("*/" * depth + f"notebook-grader-{os.getpid()}-*")]


def _failed_as_expected(failed: list[str], want: dict) -> bool:
    return failed == sorted(want["failed"]) if want.get("exact", True) else set(want["failed"]) <= set(failed)


def _says(messages: str, want: dict) -> bool:
    expected = want["message"] if isinstance(want["message"], list) else [want["message"]]
    return any(text.replace("{cell_timeout}", str(CELL_TIMEOUT)) in messages for text in expected)


@pytest.fixture
def loopback_server():
    """A TCP server on the host's 127.0.0.1; yields the list of connections it accepted."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # The corpus runs under each backend, two at a time under xdist: both servers share the port. A connection
    # that escapes one sandbox is accepted by either and fails that test, and its notebook fails its own verdict.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    server.bind(("127.0.0.1", LOOPBACK_PORT))
    server.listen(8)
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield accepted
    stop.set()
    thread.join()
    server.close()


@pytest.mark.slow(cost=150)
@pytest.mark.parametrize("backend", BACKENDS)
def test_hostile_corpus(tmp_path, backend, loopback_server):
    """Each hostile notebook ends as expected and the host is untouched."""
    uid_base = UID_BASE + 100 * BACKENDS.index(backend)  # its own uids: xdist runs two backends at once
    config = HOSTILE_CONFIG.replace(f"uid = {UID_BASE}\n", f"uid = {uid_base}\n")
    workspace = make_workspace(tmp_path / "course", config, TEST_ASSIGNMENTS)
    names = sorted(EXPECTED)
    files = {name: (CORPUS / f"{name}.ipynb").read_bytes() for name in names if name != "huge_notebook"}
    files["huge_notebook"] = _huge_notebook().encode()
    ids = {name: str(8_100_000 + index) for index, name in enumerate(names)}
    archive = moodle_zip(tmp_path / "hostile.zip", {ids[n]: {"check.ipynb": files[n]} for n in names},
                         names={ids[n]: n.replace("_", " ") for n in names})
    assert workspace.cli("import", "hostile", archive).exit_code == 0

    generated = ("runs", "nbgrader", "submissions")
    before_repo = _snapshot(REPO, (".git", ".venv", "__pycache__", ".pytest_cache", "demo", "runs", "release"))
    before_workspace = _snapshot(workspace.root, generated)
    before_etc = _etc_snapshot()

    result = workspace.cli("grade", "hostile", "--backend", backend)
    assert result.exit_code == 0, result.output

    status = workspace.status("hostile")
    problems = []
    for name in names:
        # A backend may legitimately end differently: e.g. in a container the runner is PID 1, which no
        # process of its own namespace can kill, so kill_runner's notebook simply finishes there.
        want, got = {**EXPECTED[name], **EXPECTED[name].get(backend, {})}, status[ids[name]]
        failed = sorted(c["id"] for c in got["criteria"] if not c["passed"])
        messages = " | ".join(c["message"] for c in got["criteria"] if not c["passed"])
        if got["verdict"] != want["verdict"] or not _failed_as_expected(failed, want) or not _says(messages, want):
            problems.append(f"{name}: {got['verdict']} {failed} «{messages[:300]}»")
    assert not problems, "\n".join(problems)

    assert sandbox_processes(uid_base, uid_base + 10) == []
    assert _leftover_groups() == []
    enforced = cgroups.hierarchy().version  # every run that started says which limits held it
    for record in (workspace.root / "runs" / "executions").glob("*/*/execution.json"):
        summary = json.loads(record.read_text(encoding="utf-8"))
        if summary["runner_status"] != "too-large":
            assert summary["sandbox"]["limits"] in (enforced, f"{backend}+{enforced}"), record
    assert loopback_server == []
    assert _snapshot(REPO, (".git", ".venv", "__pycache__", ".pytest_cache", "demo", "runs", "release")) == before_repo
    assert {k: v for k, v in _snapshot(workspace.root, generated).items() if "grader.db" not in k} == \
        {k: v for k, v in before_workspace.items() if "grader.db" not in k}
    assert _etc_snapshot() == before_etc
