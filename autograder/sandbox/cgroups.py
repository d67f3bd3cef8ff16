"""Per-run cgroup (v1) groups for memory and process limits, when this machine lets us create them.

A cgroup limits the whole process tree (papermill, the kernel, anything it forks) and tells afterwards whether
the OOM killer struck, which rlimits cannot. Without writable cgroups the backends fall back to rlimits.
Groups are named notebook-grader-<grader pid>-<n>; groups of a grader that no longer runs (killed with
SIGKILL, say) are swept when the next backend starts.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "notebook-grader-"
LIMIT_REACHED = 0.98  # peak usage at or above this share of the limit counts as having hit it
_counter = itertools.count()
_NAME = re.compile(rf"^{PREFIX}(\d+)-\d+$")


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
    memory_mb: int
    relative: str = ""  # set when both live at the same path in every hierarchy (a container's --cgroup-parent)

    @classmethod
    def create(cls, memory_mb: int, max_pids: int, same_path: bool = False) -> "RunGroup | None":
        """Create both groups with their limits, or return None where cgroups v1 are not writable here.

        By default each group sits below this process's own group of its controller; `same_path` puts both at
        /<name> in their hierarchies, so that a container engine can nest its groups under one parent path.
        """
        name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        made: list[Path] = []
        try:
            parents = {c: ("/" if same_path else _own_group(c)) for c in ("memory", "pids")}
            memory = CGROUP_ROOT / "memory" / parents["memory"].lstrip("/") / name
            pids = CGROUP_ROOT / "pids" / parents["pids"].lstrip("/") / name
            for group in (memory, pids):
                group.mkdir()
                made.append(group)
            limit = str(memory_mb * 1024 * 1024)
            (memory / "memory.limit_in_bytes").write_text(limit)
            swap_limit = memory / "memory.memsw.limit_in_bytes"
            if swap_limit.exists():  # no swap beyond the memory limit
                swap_limit.write_text(limit)
            (pids / "pids.max").write_text(str(max_pids))
            return cls(memory=memory, pids=pids, memory_mb=memory_mb, relative=f"/{name}" if same_path else "")
        except OSError:
            for group in reversed(made):
                _remove_tree(group)
            return None

    def procs_files(self) -> list[str]:
        return [str(self.memory / "cgroup.procs"), str(self.pids / "cgroup.procs")]

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this group."""
        for line in (self.memory / "memory.oom_control").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and int(value) > 0:
                return True
        return False

    def limit_reached(self) -> bool:
        """Whether memory use touched the limit (the OOM count of nested groups, e.g. a container's, is lost
        with them; together with a dead kernel this is how a memory kill shows)."""
        return self.peak_mb() >= self.memory_mb * LIMIT_REACHED

    def peak_mb(self) -> float:
        return int((self.memory / "memory.max_usage_in_bytes").read_text()) / (1024 * 1024)

    def kill_all(self) -> None:
        """SIGKILL every process in the groups until none is left (a fork bomb keeps forking meanwhile)."""
        for group in (self.pids, self.memory):
            _kill_members(group)

    def remove(self) -> None:
        """Kill every process still in the groups, then delete them (and groups an engine made below them)."""
        self.kill_all()
        groups = [self.pids, self.memory]
        if self.relative:  # a container engine also made this path in its other hierarchies
            groups = [c / self.relative.lstrip("/") for c in CGROUP_ROOT.iterdir()]
        for group in groups:
            _remove_tree(group)


def sweep_stale() -> int:
    """Remove the groups of graders that are gone (killed before they could clean up); returns how many."""
    swept = 0
    for hierarchy in CGROUP_ROOT.iterdir():
        roots = {hierarchy, hierarchy / _own_group(hierarchy.name).lstrip("/")}
        for root in roots:
            for group in root.glob(f"{PREFIX}*") if root.is_dir() else []:
                match = _NAME.match(group.name)
                if match and not _alive(int(match[1])):
                    _kill_members(group)
                    _remove_tree(group)
                    swept += 1
    return swept


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_members(group: Path) -> None:
    for _ in range(100):
        pids = [int(p) for g in [group, *group.rglob("*")] if g.is_dir() for p in _members(g)]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def _members(group: Path) -> list[str]:
    try:
        return (group / "cgroup.procs").read_text().split()
    except OSError:
        return []


def _remove_tree(group: Path) -> None:
    if not group.is_dir():
        return
    for child in sorted((p for p in group.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        _rmdir(child)
    _rmdir(group)


def _rmdir(group: Path) -> None:
    for _ in range(20):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # still busy while the last process is reaped
            time.sleep(0.05)
