"""Per-run cgroups (v1 or v2) that hold the memory, process and CPU limits of one sandboxed run.

A cgroup limits the whole process tree (papermill, the kernel, anything it forks), charges the sandbox's tmpfs
mounts to the memory limit and tells afterwards whether the OOM killer struck, which rlimits cannot. The host's
hierarchy is detected once (`hierarchy()`): cgroup v1 (one mount per controller, /sys/fs/cgroup/memory, …),
cgroup v2 (one unified tree) or none usable; what is missing is kept as one line each, with the fix, so that a
backend can refuse to run rather than weaken the limits. Both versions give the same RunGroup interface.

On v2 a process may not sit in a group whose controllers are enabled for its children ("no internal
processes"), so the grader moves itself (and whatever shares its group) into a leaf, `notebook-grader-self`,
and creates the run groups next to it. Run groups are named notebook-grader-<grader pid>-<n>; groups of a
grader that no longer runs (killed with SIGKILL, say) are swept when the next backend starts.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import re
import signal
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PREFIX = "notebook-grader-"
SELF_LEAF = "notebook-grader-self"  # v2: the leaf the grader moves itself into
CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
LIMIT_REACHED = 0.98  # peak usage at or above this share of the limit counts as having hit it
CGROUP1, CGROUP2, NONE = "cgroup1", "cgroup2", "none"
_counter = itertools.count()
_NAME = re.compile(rf"^{PREFIX}(\d+)-\d+$")
_DELEGATE = "delegate it (systemd: Delegate=yes) or run the grader as root"


@dataclass(frozen=True)
class GroupLimits:
    """The limits a run group enforces."""

    memory_mb: int
    pids: int
    cpus: float


class RunGroup(ABC):
    """The cgroup(s) of one sandboxed run; the same interface on v1 and v2."""

    version: str
    limits: GroupLimits
    relative: str = ""  # the path a container engine nests its own group under ("" for bwrap)

    @abstractmethod
    def procs_files(self) -> list[str]:
        """The cgroup.procs files a process writes its pid to, to join the run's group(s)."""

    @abstractmethod
    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this group (or of a group below it)."""

    @abstractmethod
    def peak_mb(self) -> float:
        """The most memory the group used at once."""

    @abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process in the group(s) until none is left (a fork bomb keeps forking meanwhile)."""

    @abstractmethod
    def remove(self) -> None:
        """Kill every process still in the group(s), then delete them (and groups an engine made below)."""

    def limit_reached(self) -> bool:
        """Whether memory use touched the limit (the OOM count of nested groups, e.g. a container's, can be lost
        with them; together with a dead kernel this is how a memory kill shows)."""
        return self.peak_mb() >= self.limits.memory_mb * LIMIT_REACHED


@dataclass(frozen=True)
class Hierarchy:
    """What this host offers: the cgroup version, where the grader makes its groups and what is missing."""

    version: str  # CGROUP1, CGROUP2 or NONE
    root: Path
    problems: tuple[str, ...] = ()  # one line each: what is missing and how to fix it; empty when usable
    base: Path | None = None  # v2: the group the run groups are made in
    controllers: tuple[str, ...] = ()  # the controllers the run groups get

    @property
    def usable(self) -> bool:
        return self.version != NONE and not self.problems

    def create(self, limits: GroupLimits, for_container: bool = False) -> RunGroup:
        """A new run group with these limits; `for_container` lets an engine nest its own group below it.

        Raises OSError where the group cannot be made although the hierarchy looked usable.
        """
        if not self.usable:
            raise OSError(f"no usable cgroup hierarchy: {'; '.join(self.problems) or self.version}")
        name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        if self.version == CGROUP2:
            assert self.base is not None
            return V2Group.create(self.root, self.base / name, limits, for_container)
        return V1Group.create(self.root, name, limits, for_container)

    def sweep_stale(self) -> int:
        """Remove the groups of graders that are gone (killed before they could clean up); returns how many."""
        if self.version == CGROUP2 and self.base is not None:
            return _sweep([self.base])
        if self.version == CGROUP1:
            roots = [h / _own_v1_group(h.name).lstrip("/") for h in self.root.iterdir() if h.is_dir()]
            return _sweep([h for h in self.root.iterdir() if h.is_dir()] + roots)
        return 0


@functools.lru_cache(maxsize=None)
def _detect(root: Path) -> Hierarchy:
    if (root / "cgroup.controllers").is_file():
        return _prepare_v2(root)
    if any((root / c / "cgroup.procs").is_file() for c in CONTROLLERS):
        return _detect_v1(root)
    return Hierarchy(NONE, root, (f"no cgroup hierarchy at {root}: mount one (mount -t cgroup2 none {root}; "
                                  "systemd does this at boot)",))


def hierarchy(root: Path | None = None) -> Hierarchy:
    """The host's cgroup hierarchy below `root` (default /sys/fs/cgroup), detected (and on v2 prepared) once."""
    return _detect(Path(root or CGROUP_ROOT))


# --- cgroup v1 -------------------------------------------------------------------------------------------------


def _own_v1_group(controller: str) -> str:
    """This process's group path for a v1 controller, e.g. '/process_api/abc' for memory."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


def _detect_v1(root: Path) -> Hierarchy:
    problems = []
    for controller in CONTROLLERS:
        mount = root / controller
        if not (mount / "cgroup.procs").is_file():
            problems.append(f"cgroup v1: no {controller} controller mounted at {mount}: mount it "
                            f"(mount -t cgroup -o {controller} cgroup {mount}) or boot with cgroup v2")
            continue
        parent = mount / _own_v1_group(controller).lstrip("/")
        if not os.access(parent, os.W_OK):
            problems.append(f"cgroup v1: {parent} not writable: {_DELEGATE}")
    return Hierarchy(CGROUP1, root, tuple(problems), controllers=CONTROLLERS)


@dataclass
class V1Group(RunGroup):
    """A memory, a pids and a cpu group, one per v1 hierarchy."""

    groups: dict[str, Path]
    limits: GroupLimits
    root: Path
    relative: str = ""  # set for containers: the groups live at /<name> in every hierarchy
    version: str = CGROUP1

    @classmethod
    def create(cls, root: Path, name: str, limits: GroupLimits, for_container: bool) -> "V1Group":
        """By default each group sits below this process's own group of its controller; for a container all sit
        at /<name> in their hierarchies, so that the engine can nest its groups under one parent path."""
        groups = {c: root / c / ("/" if for_container else _own_v1_group(c)).lstrip("/") / name for c in CONTROLLERS}
        group = cls(groups, limits, root, relative=f"/{name}" if for_container else "")
        made: list[Path] = []
        try:
            for path in groups.values():
                path.mkdir()
                made.append(path)
            memory = str(limits.memory_mb * 1024 * 1024)
            (groups["memory"] / "memory.limit_in_bytes").write_text(memory)
            swap_limit = groups["memory"] / "memory.memsw.limit_in_bytes"
            if swap_limit.exists():  # no swap beyond the memory limit
                swap_limit.write_text(memory)
            (groups["pids"] / "pids.max").write_text(str(limits.pids))
            (groups["cpu"] / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (groups["cpu"] / "cpu.cfs_quota_us").write_text(str(_quota_us(limits.cpus)))
        except OSError:
            for path in reversed(made):
                _remove_tree(path)
            raise
        return group

    def procs_files(self) -> list[str]:
        return [str(g / "cgroup.procs") for g in self.groups.values()]

    def oom_killed(self) -> bool:
        return _flat_keyed(self.groups["memory"] / "memory.oom_control").get("oom_kill", 0) > 0

    def peak_mb(self) -> float:
        return int((self.groups["memory"] / "memory.max_usage_in_bytes").read_text()) / (1024 * 1024)

    def kill_all(self) -> None:
        for group in self.groups.values():
            _kill_members(group)

    def remove(self) -> None:
        self.kill_all()
        groups = list(self.groups.values())
        if self.relative:  # a container engine also made this path in its other hierarchies
            groups = [h / self.relative.lstrip("/") for h in self.root.iterdir()]
        for group in groups:
            _remove_tree(group)


# --- cgroup v2 -------------------------------------------------------------------------------------------------


def _own_v2_group() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    return "/"


def _prepare_v2(root: Path) -> Hierarchy:
    """Find the grader's own group, make it a parent of run groups (grader in a leaf, controllers enabled)."""
    own = root / _own_v2_group().lstrip("/")
    base = own.parent if own.name == SELF_LEAF else own
    is_root = not (base / "cgroup.type").exists()  # the hierarchy's root has no type and no process rule
    try:
        _enable_from_above(root, base)
        missing = [c for c in CONTROLLERS if c not in _words(base / "cgroup.controllers")]
        if missing:
            return Hierarchy(CGROUP2, root, (
                f"cgroup v2: controller(s) {', '.join(missing)} not available in {base} (cgroup.controllers): "
                f"enable them in {base.parent}/cgroup.subtree_control (systemd: Delegate=yes) or run as root",),
                base=base)
        if not is_root:
            _move_members_into_leaf(base)
        _enable_for_children(base, retries=1 if is_root else 5)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return Hierarchy(CGROUP2, root, (f"cgroup v2: {base} not writable ({reason}): {_DELEGATE}",), base=base)
    return Hierarchy(CGROUP2, root, base=base, controllers=CONTROLLERS)


def _enable_from_above(root: Path, base: Path) -> None:
    """As root, enable missing controllers on the way down from the root to `base`'s parent (inner groups
    hold no processes on a systemd host, so this is allowed); a delegated user relies on its delegation."""
    if os.geteuid() != 0:
        return
    parts = base.relative_to(root).parts
    for group in (root.joinpath(*parts[:i]) for i in range(len(parts))):  # the root … base's parent
        wanted = [c for c in CONTROLLERS if c in _words(group / "cgroup.controllers")
                  and c not in _words(group / "cgroup.subtree_control")]
        if wanted:
            (group / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))


def _enable_for_children(base: Path, retries: int) -> None:
    """Enable the controllers in base/cgroup.subtree_control; EBUSY means a process arrived in base meanwhile
    (another grader process starting at the same moment): move it into the leaf too and try again."""
    for attempt in range(retries):
        wanted = [c for c in CONTROLLERS if c not in _words(base / "cgroup.subtree_control")]
        if not wanted:
            return
        try:
            (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or attempt == retries - 1:
                raise
            _move_members_into_leaf(base)


def _move_members_into_leaf(base: Path) -> None:
    """Move every process of `base` into base/notebook-grader-self so controllers can be enabled for children."""
    leaf = base / SELF_LEAF
    leaf.mkdir(exist_ok=True)
    for _ in range(10):  # processes may fork meanwhile
        members = _members(base)
        if not members:
            return
        for pid in members:
            try:
                (leaf / "cgroup.procs").write_text(pid)
            except ProcessLookupError:
                pass


@dataclass
class V2Group(RunGroup):
    """One group of the unified hierarchy with memory.max, memory.swap.max, pids.max and cpu.max."""

    path: Path
    limits: GroupLimits
    relative: str = ""
    version: str = CGROUP2
    _peak: float = 0.0
    _sampler: threading.Event | None = None

    @classmethod
    def create(cls, root: Path, path: Path, limits: GroupLimits, for_container: bool) -> "V2Group":
        path.mkdir()
        group = cls(path, limits, relative="/" + str(path.relative_to(root)) if for_container else "")
        try:
            (path / "memory.max").write_text(str(limits.memory_mb * 1024 * 1024))
            if (path / "memory.swap.max").exists():  # absent only where the kernel accounts no swap
                (path / "memory.swap.max").write_text("0")
            (path / "pids.max").write_text(str(limits.pids))
            (path / "cpu.max").write_text(f"{_quota_us(limits.cpus)} {CPU_PERIOD_US}")
            if for_container:  # the engine makes its own group below ours and sets the same limits there
                (path / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in CONTROLLERS))
        except OSError:
            _remove_tree(path)
            raise
        if not (path / "memory.peak").exists():  # kernels before 5.19: sample memory.current instead
            group._start_sampling()
        return group

    def procs_files(self) -> list[str]:
        return [str(self.path / "cgroup.procs")]

    def oom_killed(self) -> bool:
        return _flat_keyed(self.path / "memory.events").get("oom_kill", 0) > 0

    def peak_mb(self) -> float:
        peak = self.path / "memory.peak"
        if peak.exists():
            return int(peak.read_text()) / (1024 * 1024)
        return self._peak / (1024 * 1024)

    def kill_all(self) -> None:
        kill = self.path / "cgroup.kill"
        if kill.exists():  # kernel 5.14+: one write kills the whole tree, forks in flight included
            try:
                kill.write_text("1")
            except OSError:
                pass
            _wait_empty(self.path)
        _kill_members(self.path)

    def remove(self) -> None:
        if self._sampler is not None:
            self._sampler.set()
        self.kill_all()
        _remove_tree(self.path)

    def _start_sampling(self) -> None:
        stop = self._sampler = threading.Event()
        current = self.path / "memory.current"

        def sample() -> None:
            while not stop.wait(0.05):
                try:
                    self._peak = max(self._peak, int(current.read_text()))
                except (OSError, ValueError):
                    return

        threading.Thread(target=sample, daemon=True).start()


# --- shared helpers --------------------------------------------------------------------------------------------


def _quota_us(cpus: float) -> int:
    return max(1000, int(cpus * CPU_PERIOD_US))  # the kernel's smallest quota is 1 ms


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _flat_keyed(path: Path) -> dict[str, int]:
    """A cgroup 'key value' file (memory.events, memory.oom_control) as a dict."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def _sweep(roots: list[Path]) -> int:
    swept = 0
    for root in dict.fromkeys(roots):
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


def _wait_empty(group: Path) -> None:
    for _ in range(200):
        if not any(_members(g) for g in [group, *group.rglob("*")] if g.is_dir()):
            return
        time.sleep(0.01)


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
