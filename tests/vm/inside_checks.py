"""Run inside the cgroup v2 VM only (not collected on the host): the VM is what the harness promises.

The kernel shows the unified hierarchy and no v1 controller, the tests run as root in the leaf group /tests with
memory, pids and cpu available, and the kernel enforces a v2 memory and process limit on a group made here, so
a failure of the grader's own tests in the VM is the grader's, not the VM's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CGROUP = Path("/sys/fs/cgroup")
CGROUP2_SUPER_MAGIC = 0x63677270


def _filesystem_magic(path: Path) -> int:
    """statfs(2)'s f_type (os.statvfs does not return it): coreutils' `stat -f` prints it in hex."""
    return int(subprocess.run(["stat", "-fc", "%t", str(path)], capture_output=True, text=True, check=True).stdout, 16)


@pytest.fixture
def scratch_group():
    """A fresh group beside /tests; afterwards its processes are killed (cgroup.kill) and it is removed."""
    group = CGROUP / f"harness-check-{os.getpid()}"
    group.mkdir()
    yield group
    (group / "cgroup.kill").write_text("1")
    for _ in range(100):
        try:
            group.rmdir()
            return
        except OSError:
            subprocess.run(["sleep", "0.05"])


def test_unified_hierarchy_only():
    """/sys/fs/cgroup is cgroup2 and no v1 hierarchy is mounted anywhere."""
    assert _filesystem_magic(CGROUP) == CGROUP2_SUPER_MAGIC
    mounts = Path("/proc/mounts").read_text().splitlines()
    assert not [line for line in mounts if line.split()[2] == "cgroup"]


def test_tests_run_as_root_in_a_leaf_with_the_controllers():
    """This process is root, in /tests, and memory, pids and cpu are available to groups it makes."""
    assert os.geteuid() == 0
    assert Path("/proc/self/cgroup").read_text().strip() == "0::/tests"
    assert {"memory", "pids", "cpu"} <= set((CGROUP / "tests" / "cgroup.controllers").read_text().split())


def test_kernel_enforces_a_memory_limit(scratch_group):
    """A process that allocates past memory.max (no swap) is killed by the OOM killer, counted in memory.events."""
    (scratch_group / "memory.max").write_text(str(64 * 1024 * 1024))
    (scratch_group / "memory.swap.max").write_text("0")
    hog = "import os; os.write(1, b'in\\n'); block = bytearray(256 * 1024 * 1024); print('survived')"
    result = _run_in(scratch_group, [sys.executable, "-c", hog])
    events = dict(line.split() for line in (scratch_group / "memory.events").read_text().splitlines())
    assert result.returncode == -9 and "survived" not in result.stdout
    assert int(events["oom_kill"]) >= 1


def test_kernel_enforces_a_process_limit(scratch_group):
    """Forking past pids.max fails inside the group."""
    (scratch_group / "pids.max").write_text("8")
    forker = textwrap.dedent("""
        import os, time
        children = []
        try:
            for _ in range(20):
                pid = os.fork()
                if pid == 0:  # let go of the output pipe, so that only the parent's exit ends it
                    os.close(1), os.close(2)
                    time.sleep(60)
                    os._exit(0)
                children.append(pid)
        except OSError as exc:
            print("refused after", len(children), type(exc).__name__)
    """)
    result = _run_in(scratch_group, [sys.executable, "-c", forker])
    assert "refused after" in result.stdout, result.stdout + result.stderr
    assert int(result.stdout.split()[2]) < 8


def _run_in(group: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run argv with its process placed in `group` before it executes anything."""
    def enter() -> None:
        (group / "cgroup.procs").write_text(str(os.getpid()))

    return subprocess.run(argv, preexec_fn=enter, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
