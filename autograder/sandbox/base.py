"""The sandbox seam: what a run asks for (RunSpec), what it gives back (RunResult), and the Sandbox protocol.

Every backend (bwrap, podman, docker) takes the same RunSpec and must guarantee the same things: no network,
an unprivileged uid, a read-only system, a size-limited writable scratch, limits on memory, processes, file
size, CPU time and CPU share, a wall-clock limit, and nothing visible but the `mounts` it was given. The
command's standard output is the only channel back; it is read up to `output_limit` bytes and never
interpreted here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


class ExitReason(str, enum.Enum):
    """Why a sandboxed command ended. Stored in the database: never rename a value."""

    OK = "ok"  # exited with status 0
    ERROR = "error"  # exited with a non-zero status
    TIMEOUT = "timeout"  # killed at the wall-clock limit
    MEMORY = "memory"  # killed by the memory limit
    OUTPUT_LIMIT = "output-limit"  # sent back more than output_limit bytes
    KILLED = "killed"  # ended by a signal for another reason


@dataclass(frozen=True)
class Mount:
    """A host path made visible inside the sandbox, read-only unless `writable`."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed command."""

    memory_mb: int = 3072
    pids: int = 256
    cpu_seconds: int = 3600
    file_size_mb: int = 512
    scratch_mb: int = 1024
    wall_seconds: float = 600.0
    output_bytes: int = 64 * 1024 * 1024
    cpus: float = 1.0  # CPU share: at most this many cores' worth of time (cgroup quota, engines' --cpus)


@dataclass(frozen=True)
class RunSpec:
    """One command to run in a fresh sandbox.

    `argv[0] == "python"` stands for the runtime's interpreter, which the backend resolves; `environment` is
    the whole environment (nothing is inherited); `mounts` is everything the command may see besides the
    system; `scratch` is the writable tmpfs working directory. `slot` selects the uid (workers run at once);
    `warm` lets the fork backend run it in an interpreter with the libraries loaded.
    """

    argv: list[str]
    environment: dict[str, str]
    mounts: list[Mount] = field(default_factory=list)
    scratch: str = "/home/student/work"
    limits: Limits = field(default_factory=Limits)
    slot: int = 0
    gpu: bool = False
    # The command may run in an interpreter that has the libraries loaded already (the fork backend forks it
    # from one); other backends start it afresh. Only for commands that behave the same either way.
    warm: bool = False


@dataclass
class RunResult:
    """What came back from one sandboxed command."""

    reason: ExitReason
    exit_code: int | None
    stdout: bytes
    stderr_tail: str
    wall_seconds: float
    memory_peak_mb: float | None = None
    memory_limit_reached: bool = False  # peak use touched the limit: with a dead kernel, a memory kill
    # uid, container, and the limits in force: {"limits": "cgroup1" | "cgroup2" | "rlimit-weak" | engine,
    # "memory_mb", "pids", "cpus"} (see limits_record)
    details: dict[str, str | int | float] = field(default_factory=dict)


def limits_record(limits: Limits, enforced_by: str) -> dict[str, str | int | float]:
    """What a run's record says about its limits: what enforced them, and the numbers."""
    return {"limits": enforced_by, "memory_mb": limits.memory_mb, "pids": limits.pids, "cpus": limits.cpus}


@runtime_checkable
class Sandbox(Protocol):
    """A backend that runs a RunSpec in isolation. Implementations must be safe to call from several threads."""

    name: str

    def run(self, spec: RunSpec) -> RunResult:
        """Run `spec` to completion (or its limits) and report how it ended; never raises for student behaviour."""
        ...

    def runtime_id(self) -> str:
        """An identifier of the software the command runs on (image digest or lock-file hash)."""
        ...
