"""Every sandbox backend this machine can run, for real: what student code can and cannot do inside it.

One contract suite, parametrized over the backends (bwrap and fork always; podman where installed, from a root
filesystem because no image can be pulled here). Its commands are warm (RunSpec.warm): the fork backend runs
them in its fork server's children, the others as always.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autograder.config import SandboxConfig
from autograder.sandbox import ExitReason, Limits, Mount, RunSpec, cgroups, get_sandbox, seccomp
from autograder.errors import SandboxError
from conftest import moodle_zip, notebook, sandbox_processes

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

REPO = Path(__file__).resolve().parents[1]


BACKENDS = ["bwrap", "fork"] + (["podman"] if shutil.which("podman") else [])


@pytest.fixture(scope="module", params=BACKENDS)
def bwrap(request):
    """A sandbox of each available backend (the name is historical: bwrap is the default), each with uids of
    its own: xdist may run two backends' tests at once, and a test counts the processes left with its uids."""
    return get_sandbox(request.param, uid_base=61500 + 20 * BACKENDS.index(request.param))


def run_python(sandbox, code: str, slot: int = 0, **limits) -> tuple[ExitReason, str, str]:
    spec = RunSpec(argv=["python", "-I", "-c", textwrap.dedent(code)], environment={},
                   limits=Limits(**{"wall_seconds": 30, **limits}), slot=slot, warm=True)
    result = sandbox.run(spec)
    return result.reason, result.stdout.decode(errors="replace"), result.stderr_tail


def test_unknown_backend_lists_the_known_ones():
    """An unknown backend name is one error that names the valid ones."""
    with pytest.raises(SandboxError, match=r"unknown sandbox backend 'nope' \(known: bwrap, docker, fork, podman\)"):
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
    assert out.splitlines()[0] == f"{bwrap.uid_base} {bwrap.uid_base}"
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


def test_no_grader_code_but_what_is_mounted(bwrap):
    """The environment brings no grader code: no `autograder`, no editable-install hook, no repository files."""
    reason, out, err = run_python(bwrap, f"""
        import importlib.util, os, sys
        print(importlib.util.find_spec("autograder"))
        print([repr(f) for f in sys.meta_path if "editable" in repr(f).lower()])
        repository = {str(REPO)!r}  # exists only as the parent of the environment, when that lives in it
        print(sorted(set(os.listdir(repository)) - {{".venv"}}) if os.path.isdir(repository) else [])
    """)
    assert reason is ExitReason.OK, err
    assert out.splitlines() == ["None", "[]", "[]"]


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
    """Allocating (and touching) 10 GB ends at the memory limit, not on the host. In 64 MB steps: one 10 GB
    request could be refused up front (MemoryError) by the kernel's overcommit check on a small host."""
    reason, out, err = run_python(bwrap, """
        data = [b"x" * (64 * 1024 ** 2) for _ in range(160)]
        print("allocated", sum(map(len, data)))
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


# --- Limits in force: cgroup v1 or v2, CPU share, no leftovers, no silent weakening ------------------------------

HIERARCHY = cgroups.hierarchy()
needs_v1 = pytest.mark.skipif(HIERARCHY.version != cgroups.CGROUP1,
                              reason=f"needs a cgroup v1 host (this one: {HIERARCHY.version})")
needs_v2 = pytest.mark.skipif(HIERARCHY.version != cgroups.CGROUP2,
                              reason=f"needs a cgroup v2 host (this one: {HIERARCHY.version}); the VM tests run it")


def test_every_run_records_the_limits_in_force(bwrap):
    """A run's details name what enforced its limits (the host's cgroup version) and the numbers."""
    spec = RunSpec(argv=["python", "-I", "-c", "print('ok')"], environment={},
                   limits=Limits(wall_seconds=30, memory_mb=700, pids=90, cpus=0.5))
    details = bwrap.run(spec).details
    assert details["limits"] in (HIERARCHY.version, f"{bwrap.name}+{HIERARCHY.version}")
    assert (details["memory_mb"], details["pids"], details["cpus"]) == (700, 90, 0.5)


@needs_v1
def test_v1_run_group_holds_memory_pids_and_cpu_limits():
    """On cgroup v1 a run gets a memory (no extra swap), a pids and a cpu (CFS quota) group; remove() deletes them."""
    group = HIERARCHY.create(cgroups.GroupLimits(memory_mb=300, pids=50, cpus=0.5))
    try:
        memory, pids, cpu = (group.groups[c] for c in ("memory", "pids", "cpu"))
        assert (memory / "memory.limit_in_bytes").read_text().strip() == str(300 * 1024 * 1024)
        assert (pids / "pids.max").read_text().strip() == "50"
        assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
    finally:
        group.remove()
    assert not any(path.exists() for path in group.groups.values())


@needs_v2
def test_v2_run_group_holds_memory_swap_pids_and_cpu_limits():
    """On cgroup v2 a run gets one group with memory.max, memory.swap.max = 0, pids.max and cpu.max, next to the
    grader's own leaf (no process sits in a group that has controllers enabled for its children)."""
    group = HIERARCHY.create(cgroups.GroupLimits(memory_mb=300, pids=50, cpus=0.5))
    try:
        path = group.path
        assert (path / "memory.max").read_text().strip() == str(300 * 1024 * 1024)
        assert (path / "memory.swap.max").read_text().strip() == "0"
        assert (path / "pids.max").read_text().strip() == "50"
        assert (path / "cpu.max").read_text().strip() == "50000 100000"
        enabled = (HIERARCHY.base / "cgroup.subtree_control").read_text().split()
        assert {"memory", "pids", "cpu"} <= set(enabled)
        if (HIERARCHY.base / "cgroup.type").exists():  # below the root: the grader sits in its own leaf
            assert (HIERARCHY.base / "cgroup.procs").read_text().split() == []
            assert str(os.getpid()) in (HIERARCHY.base / cgroups.SELF_LEAF / "cgroup.procs").read_text().split()
    finally:
        group.remove()
    assert not group.path.exists()


def test_stale_groups_of_a_dead_grader_are_swept():
    """Groups named after a grader that is gone are emptied (their processes killed) and removed."""
    gone = _dead_pid()
    name = f"{cgroups.PREFIX}{gone}-0"
    if HIERARCHY.version == cgroups.CGROUP2:
        groups = [HIERARCHY.base / name]
    else:
        groups = [HIERARCHY.root / c / cgroups._own_v1_group(c).lstrip("/") / name for c in cgroups.CONTROLLERS]
    for group in groups:
        group.mkdir()
    sleeper = subprocess.Popen(["sleep", "300"])
    for group in groups:
        (group / "cgroup.procs").write_text(str(sleeper.pid))
    assert HIERARCHY.sweep_stale() >= 1
    assert sleeper.wait(timeout=10) == -signal.SIGKILL
    assert not any(group.exists() for group in groups)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_nothing_of_a_run_survives_it(bwrap):
    """A daemon that detaches from the notebook is killed with the run; no process and no group is left."""
    reason, out, _ = run_python(bwrap, """
        import os, subprocess
        subprocess.Popen(["sleep", "600"], start_new_session=True)
        if os.fork() == 0:
            os.setsid()
            while True:
                pass
        print("detached")
    """, wall_seconds=20)
    assert reason is ExitReason.OK and "detached" in out
    # killed ones need a moment to be reaped
    assert _gone_within(5, lambda: sandbox_processes(bwrap.uid_base, bwrap.uid_base + 10)) == []
    leftovers = [g for root in {HIERARCHY.root, HIERARCHY.base or HIERARCHY.root} for depth in range(4)
                 for g in root.glob("*/" * depth + f"{cgroups.PREFIX}{os.getpid()}-*")]
    assert leftovers == []


def _gone_within(seconds: float, alive) -> list:
    """What `alive()` still lists after up to `seconds` (processes SIGKILLed a moment ago are still being reaped)."""
    deadline = time.monotonic() + seconds
    while (found := alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_tmpfs_filler_is_stopped_by_the_memory_limit(bwrap):
    """Files in the sandbox's tmpfs are memory: filling /dev/shm beyond the memory limit ends at that limit."""
    reason, out, _ = run_python(bwrap, """
        with open("/dev/shm/filler", "wb") as f:
            for _ in range(900):
                f.write(b"x" * (1024 * 1024))
                f.flush()
        print("written")
    """, memory_mb=256, scratch_mb=1024, wall_seconds=60)
    assert "written" not in out
    assert reason is ExitReason.MEMORY


NEIGHBOUR = """
    import time
    start = time.perf_counter()
    n = 0
    for _ in range(12_000_000):
        n += 1
    print(time.perf_counter() - start)
"""
HOG = """
    import os, resource, time
    started = time.monotonic()
    children = []
    for _ in range(8):  # eight busy processes: far more than the one core this sandbox may use
        pid = os.fork()
        if pid == 0:
            while time.monotonic() - started < {seconds}:
                pass
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print((used.ru_utime + used.ru_stime) / (time.monotonic() - started))
"""


@pytest.mark.slow(cost=40)
def test_thread_storm_gets_no_more_than_its_cpu_share(bwrap):
    """With half the machine each (one core of two here, half the one CPU of the cgroup v2 VM), eight busy
    processes in one sandbox use no more than their share and barely slow a CPU-bound neighbour (the machine is
    shared, so the bound is generous: without a share it would be ~4x). Other tests load the machine meanwhile,
    so the neighbour runs twice beside the storm and its faster run counts, against its slower run alone."""
    share = (os.cpu_count() or 2) / 2
    alone = float(run_python(bwrap, NEIGHBOUR, cpus=share, wall_seconds=120)[1])
    hog_result: list = []
    storm_seconds = alone * 6 + 4
    storm_ends = time.monotonic() + storm_seconds  # at the earliest: its clock starts inside the sandbox
    hog = threading.Thread(target=lambda: hog_result.append(
        run_python(bwrap, HOG.format(seconds=storm_seconds), cpus=share, wall_seconds=120)))
    hog.start()
    time.sleep(2)  # the storm is up
    runs: list[float] = []
    while len(runs) < 2:
        started = time.monotonic()
        runs.append(float(run_python(bwrap, NEIGHBOUR, cpus=share, slot=1, wall_seconds=120)[1]))
        took = time.monotonic() - started
        if time.monotonic() + took > storm_ends:  # a second run would outlast the storm
            break
    beside = min(runs)
    hog.join()
    alone = max(alone, float(run_python(bwrap, NEIGHBOUR, cpus=share, wall_seconds=120)[1]))  # load may have grown
    reason, cores_used, _ = hog_result[0]
    assert reason is ExitReason.OK
    assert float(cores_used) <= share * 1.15, f"the storm used {float(cores_used):.2f} cores of its {share}"
    assert beside <= alone * 2.0, f"neighbour took {beside:.1f} s beside the storm, {alone:.1f} s alone"


def test_cpu_share_defaults_to_an_equal_share_per_worker():
    """[sandbox] cpus defaults to this machine's cores divided by the workers; set, it is taken as it is."""
    assert SandboxConfig(workers=2).cpu_share() == round((os.cpu_count() or 1) / 2, 2)
    assert SandboxConfig(workers=2, cpus=1.5).cpu_share() == 1.5


# --- No silent weakening -----------------------------------------------------------------------------------------


@pytest.fixture
def no_cgroups(tmp_path, monkeypatch):
    """A host without cgroups: the hierarchy is looked for in an empty folder."""
    root = tmp_path / "no-cgroups"
    root.mkdir()
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", root)
    return root


def test_bwrap_refuses_where_limits_cannot_be_enforced(no_cgroups):
    """Without a cgroup hierarchy the bwrap backend refuses, naming what is missing and the way out."""
    with pytest.raises(SandboxError) as refused:
        get_sandbox("bwrap", uid_base=61500)
    assert str(refused.value) == (
        f"bwrap backend: limits cannot be enforced: no cgroup hierarchy at {no_cgroups}: mount one "
        f"(mount -t cgroup2 none {no_cgroups}; systemd does this at boot) (or grade with --allow-weak-limits)")


def test_weak_limits_only_when_allowed_and_marked(no_cgroups):
    """Allowed explicitly, bwrap runs with rlimits only and every run says so."""
    weak = get_sandbox("bwrap", uid_base=61500, allow_weak_limits=True)
    result = weak.run(RunSpec(argv=["python", "-I", "-c", "print('ok')"], environment={},
                              limits=Limits(wall_seconds=30)))
    assert result.reason is ExitReason.OK
    assert result.details["limits"] == "rlimit-weak"


def test_grade_refuses_without_enforceable_limits_and_marks_weak_runs(sandboxcheck, tmp_path, no_cgroups):
    """`grader grade` stops with one line where the limits cannot hold; --allow-weak-limits grades and marks."""
    archive = moodle_zip(tmp_path / "moodle.zip", {"4000001": {"check.ipynb": notebook("print('fertig')")}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    refused = sandboxcheck.cli("grade", "sandboxcheck")
    assert refused.exit_code == 5
    assert refused.output.strip().splitlines() == [
        f"error: bwrap backend: limits cannot be enforced: no cgroup hierarchy at {no_cgroups}: mount one "
        f"(mount -t cgroup2 none {no_cgroups}; systemd does this at boot) (or grade with --allow-weak-limits)"]
    graded = sandboxcheck.cli("grade", "sandboxcheck", "--allow-weak-limits")
    assert graded.exit_code == 0, graded.output
    (record,) = (sandboxcheck.root / "runs" / "executions").glob("*/*/execution.json")
    assert json.loads(record.read_text())["sandbox"]["limits"] == "rlimit-weak"


# --- Seccomp (bwrap) ---------------------------------------------------------------------------------------------


def test_seccomp_denies_what_notebooks_never_need():
    """Every denied system call, and clone() into new namespaces, fails with EPERM inside bwrap; the filter's
    file descriptor does not leak into the sandbox. (tests/hostile/syscall_*.ipynb do the same as notebooks.)"""
    import pyseccomp

    numbers = {name: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) for name in seccomp.denied_calls()}
    numbers = {name: nr for name, nr in numbers.items() if nr >= 0}
    reason, out, err = run_python(get_sandbox("bwrap", uid_base=61500), f"""
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        def call(nr, *args):
            ctypes.set_errno(0)
            result = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
            if result == 0 and nr == 56:
                os._exit(0)
            return "allowed" if result != -1 else ctypes.get_errno()
        results = {{name: call(nr, 0, 0, 0, 0, 0) for name, nr in {numbers!r}.items()}}
        results["clone(CLONE_NEWUSER)"] = call(56, 0x10000000 | 17, 0, 0, 0, 0)
        results["personality(ADDR_NO_RANDOMIZE)"] = call(135, 0x0040000)
        print({{name: r for name, r in results.items() if r != 1}})
        print(sorted(os.listdir("/proc/self/fd")))
        print(call(135, 0xffffffff) != "allowed", call(39))
    """)
    assert reason is ExitReason.OK, err
    not_denied, fds, harmless = out.splitlines()
    assert not_denied == "{}"  # 1 == EPERM for every call
    assert fds == "['0', '1', '2', '3']"  # stdio and listdir's own
    assert harmless.startswith("False ")  # personality query and getpid still work
