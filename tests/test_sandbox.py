"""Every sandbox backend this machine can run, for real: what student code can and cannot do inside it.

One contract suite, parametrized over the backends (bwrap always; podman where installed, from a root
filesystem because no image can be pulled here).
"""

from __future__ import annotations

import shutil
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from autograder.sandbox import ExitReason, Limits, Mount, RunSpec, get_sandbox
from autograder.errors import SandboxError

REPO = Path(__file__).resolve().parents[1]


BACKENDS = ["bwrap"] + (["podman"] if shutil.which("podman") else [])


@pytest.fixture(scope="module", params=BACKENDS)
def bwrap(request):
    """A sandbox of each available backend (the name is historical: bwrap is the default)."""
    return get_sandbox(request.param, uid_base=61500)


def run_python(sandbox, code: str, **limits) -> tuple[ExitReason, str, str]:
    spec = RunSpec(argv=["python", "-I", "-c", textwrap.dedent(code)], environment={},
                   limits=Limits(**{"wall_seconds": 30, **limits}))
    result = sandbox.run(spec)
    return result.reason, result.stdout.decode(errors="replace"), result.stderr_tail


def test_unknown_backend_lists_the_known_ones():
    """An unknown backend name is one error that names the valid ones."""
    with pytest.raises(SandboxError, match=r"unknown sandbox backend 'nope' \(known: bwrap, docker, podman\)"):
        get_sandbox("nope")


def test_runs_as_unprivileged_user_without_capabilities(bwrap):
    """Student code runs as a non-root uid with no capabilities and no_new_privs."""
    reason, out, _ = run_python(bwrap, """
        import os
        status = open("/proc/self/status").read()
        print(os.getuid(), os.getgid())
        print([l.split()[1] for l in status.splitlines() if l.startswith(("CapEff", "CapPrm", "NoNewPrivs"))])
    """)
    assert reason is ExitReason.OK
    assert out.splitlines()[0] == "61500 61500"
    assert out.splitlines()[1] == "['0000000000000000', '0000000000000000', '1']"


def test_cannot_reach_a_server_on_the_host_loopback(bwrap):
    """A server listening on the host's 127.0.0.1 is unreachable from inside (and receives nothing)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        for _ in range(20):
            try:
                accepted.append(server.accept())
            except (socket.timeout, OSError):
                continue

    watcher = threading.Thread(target=accept)
    watcher.start()
    reason, out, _ = run_python(bwrap, f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=3)
            print("connected")
        except OSError as exc:
            print("refused", type(exc).__name__)
        try:
            socket.getaddrinfo("pypi.org", 443)
            print("resolved")
        except OSError as exc:
            print("no dns", type(exc).__name__)
        print("interfaces", [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]])
    """)
    watcher.join()
    server.close()
    assert reason is ExitReason.OK
    assert "refused ConnectionRefusedError" in out and "no dns" in out
    assert "connected" not in out and not accepted
    assert "interfaces ['lo']" in out


def test_sees_only_what_is_mounted(bwrap, tmp_path):
    """The repository (rubrics, hidden labels), the database, /root and other folders are not there."""
    secret = REPO / "tests" / "assignments" / "sandboxcheck" / "hidden" / "labels.txt"
    database = tmp_path / "grader.db"
    database.write_text("db")
    reason, out, _ = run_python(bwrap, f"""
        import os
        for path in [{str(secret)!r}, {str(REPO / 'assignments' / 'task5' / 'rubric')!r}, {str(database)!r},
                     "/root/.bash_history", "/home", "/var/log", "/etc/shadow"]:
            try:
                if os.path.isdir(path):
                    print(path, "LISTED", os.listdir(path))
                else:
                    print(path, "READ", open(path).read()[:20])
            except OSError as exc:
                print(path, "denied", type(exc).__name__)
    """)
    assert reason is ExitReason.OK
    lines = out.splitlines()
    assert len(lines) == 7
    for line in lines:
        if line.startswith("/home"):
            assert line == "/home LISTED ['student']"  # only the scratch's parent
        else:
            assert " denied " in line, line


def test_writes_stay_in_the_scratch(bwrap, tmp_path):
    """System folders are read-only; the scratch is writable and size-limited; mounts are read-only."""
    source = tmp_path / "input"
    source.mkdir()
    (source / "given.txt").write_text("x")
    source.chmod(0o755)
    (source / "given.txt").chmod(0o644)
    spec = RunSpec(
        argv=["python", "-I", "-c", textwrap.dedent("""
            import os
            for path in ["/usr/evil", "/etc/evil", "/input/evil", "/tmp/ok", "ok.txt"]:
                try:
                    open(path, "w").write("x"); print(path, "written")
                except OSError as exc:
                    print(path, type(exc).__name__)
            try:
                with open("big", "wb") as f:
                    for _ in range(100):
                        f.write(b"x" * 1024 * 1024)
                print("big written")
            except OSError as exc:
                print("big", exc.errno)
        """)],
        environment={}, mounts=[Mount(source, "/input")], limits=Limits(wall_seconds=30, scratch_mb=32),
    )
    result = bwrap.run(spec)
    out = result.stdout.decode()
    assert "/usr/evil OSError" in out or "/usr/evil PermissionError" in out
    assert "/input/evil" in out and "/input/evil written" not in out
    assert "/tmp/ok written" in out and "ok.txt written" in out
    assert "big 28" in out  # ENOSPC: the 32 MB scratch is full
    assert sorted(p.name for p in source.iterdir()) == ["given.txt"]


def test_endless_loop_ends_at_the_wall_clock(bwrap):
    """A command that never ends is killed at the wall-clock limit."""
    reason, _, _ = run_python(bwrap, "while True: pass", wall_seconds=3)
    assert reason is ExitReason.TIMEOUT


def test_ten_gigabytes_are_stopped_by_the_memory_limit(bwrap):
    """Allocating (and touching) 10 GB ends at the memory limit, not on the host."""
    reason, out, err = run_python(bwrap, """
        data = bytearray(b"x" * (10 * 1024 ** 3))
        print("allocated", len(data))
    """, memory_mb=512)
    assert "allocated" not in out
    assert reason is ExitReason.MEMORY


def test_fork_bomb_hits_the_process_limit(bwrap):
    """Forking without end is capped by the process limit; the sandbox still ends cleanly."""
    reason, out, _ = run_python(bwrap, """
        import os, time
        children = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
        except OSError as exc:
            print("stopped after", children, type(exc).__name__)
    """, pids=40, wall_seconds=20)
    assert reason is ExitReason.OK
    count = int(out.split()[2])
    assert 10 <= count < 40


def test_output_is_capped(bwrap):
    """A flood on stdout is cut at the output limit and reported as such."""
    reason, out, _ = run_python(bwrap, "import sys\nwhile True: sys.stdout.write('x' * 65536)", output_bytes=1 << 20)
    assert reason is ExitReason.OUTPUT_LIMIT
    assert len(out) <= 1 << 20
