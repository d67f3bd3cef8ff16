"""Per-run cgroup (v1) groups for memory and process limits, when this machine lets us create them.

A cgroup limits the whole process tree (papermill, the kernel, anything it forks) and tells afterwards whether
the OOM killer struck, which rlimits cannot. Without writable cgroups the backends fall back to rlimits.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


def _own_group(controller: str) -> str:
    """This process's group path for a v1 controller, e.g. '/process_api/abc' for memory."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


@dataclass
class RunGroup:
    """A memory and a pids cgroup created for one sandboxed run; remove() kills leftovers and deletes them."""

    memory: Path
    pids: Path

    @classmethod
    def create(cls, memory_mb: int, max_pids: int) -> "RunGroup | None":
        """Create both groups with their limits, or return None where cgroups v1 are not writable here."""
        name = f"notebook-grader-{os.getpid()}-{next(_counter)}"
        made: list[Path] = []
        try:
            memory = CGROUP_ROOT / "memory" / _own_group("memory").lstrip("/") / name
            pids = CGROUP_ROOT / "pids" / _own_group("pids").lstrip("/") / name
            for group in (memory, pids):
                group.mkdir()
                made.append(group)
            limit = str(memory_mb * 1024 * 1024)
            (memory / "memory.limit_in_bytes").write_text(limit)
            swap_limit = memory / "memory.memsw.limit_in_bytes"
            if swap_limit.exists():  # no swap beyond the memory limit
                swap_limit.write_text(limit)
            (pids / "pids.max").write_text(str(max_pids))
            return cls(memory=memory, pids=pids)
        except OSError:
            for group in reversed(made):
                _remove_quietly(group)
            return None

    def procs_files(self) -> list[str]:
        return [str(self.memory / "cgroup.procs"), str(self.pids / "cgroup.procs")]

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this group (or the limit refused memory)."""
        control = (self.memory / "memory.oom_control").read_text()
        for line in control.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and int(value) > 0:
                return True
        return int((self.memory / "memory.failcnt").read_text()) > 0 and "under_oom 1" in control

    def peak_mb(self) -> float:
        return int((self.memory / "memory.max_usage_in_bytes").read_text()) / (1024 * 1024)

    def kill_all(self) -> None:
        """SIGKILL every process in the groups until none is left (a fork bomb keeps forking meanwhile)."""
        for group in (self.pids, self.memory):
            for _ in range(100):
                pids = _members(group)
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.02)

    def remove(self) -> None:
        """Kill every process still in the groups, then delete them."""
        self.kill_all()
        for group in (self.pids, self.memory):
            _remove_quietly(group)


def _members(group: Path) -> list[int]:
    try:
        return [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _remove_quietly(group: Path) -> None:
    for _ in range(20):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # still busy while the last process is reaped
            time.sleep(0.05)
