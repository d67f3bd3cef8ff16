"""A plain local kernel for the self-check where no sandbox can be built (a student's laptop, no root).

LocalSandbox implements the Sandbox protocol without isolation: the RunSpec's mounts become symlinks in a
private folder, and the paths in the command, its environment and the runner's job file are moved there. Only
the wall clock and the output size are enforced; memory, processes and CPU are not, and no isolation from the
student's own files exists. That is acceptable only because the code is the student's own, on their own
machine; the official grading never uses this backend (it is not in autograder.sandbox.BACKENDS).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from pathlib import Path

from autograder.execute import JOB_FILE, OFFLINE_DIR
from autograder.placement import Placer
from autograder.sandbox import RunResult, RunSpec
from autograder.sandbox.base import limits_record
from autograder.sandbox.process import supervise

LOCAL_NAME = "local"
# The student's own settings the kernel may need (their NLTK data, model caches in HOME); nothing else.
PASSED_THROUGH = ("PATH", "HOME", "USERPROFILE", "SYSTEMROOT", "TMPDIR")


# Leads a session of its own (unless supervise already started it in one: then setsid is refused, and not needed).
NEW_SESSION = ("import os, sys\ntry:\n    os.setsid()\nexcept OSError:\n    pass\n"
               "os.execvp(sys.argv[1], sys.argv[1:])")


def _kill_session(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LocalSandbox:
    """Runs a RunSpec as a plain child process in a private folder; see the module docstring."""

    name = LOCAL_NAME

    def runtime_id(self) -> str:
        return f"local:{sys.executable}"

    def run(self, spec: RunSpec) -> RunResult:
        with tempfile.TemporaryDirectory(prefix="grader-check-") as tmp:
            root = Path(tmp)
            places = self._place_mounts(spec, root)
            move = _mover(places, root)
            argv = [sys.executable if i == 0 and arg == "python" else move(arg, inside=True)
                    for i, arg in enumerate(spec.argv)]
            env = {k: v for k, v in os.environ.items() if k in PASSED_THROUGH}
            offline_missing = OFFLINE_DIR not in places
            for key, value in spec.environment.items():
                if offline_missing and value.startswith(OFFLINE_DIR):
                    continue  # no offline data here: the library's own default (the student's download) applies
                env[key] = move(value)
            scratch = places[spec.scratch]
            # A session of its own, so that a timeout ends the kernel too; `env -i`: exactly this environment.
            command = [sys.executable, "-c", NEW_SESSION, "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]
            outcome = supervise(command, wall_seconds=spec.limits.wall_seconds,
                                output_bytes=spec.limits.output_bytes, cwd=str(scratch), kill=_kill_session)
        return RunResult(outcome.reason, outcome.exit_code, outcome.stdout, outcome.stderr_tail,
                         outcome.wall_seconds, details=limits_record(spec.limits, "none (local kernel)"))

    def _place_mounts(self, spec: RunSpec, root: Path) -> dict[str, Path]:
        """Link each mount at its target below `root`; the runner's job file is rewritten, not linked."""
        places = {mount.target: root / mount.target.lstrip("/") for mount in spec.mounts}
        places[spec.scratch] = root / spec.scratch.lstrip("/")
        places[spec.scratch].mkdir(parents=True)
        move = _mover(places, root)
        for mount in spec.mounts:
            place = places[mount.target]
            place.parent.mkdir(parents=True, exist_ok=True)
            if mount.target == JOB_FILE:
                job = json.loads(Path(mount.source).read_text(encoding="utf-8"))
                place.write_text(json.dumps(_moved(job, move)), encoding="utf-8")
            else:
                place.symlink_to(Path(mount.source).resolve())
        (root / "tmp").mkdir(exist_ok=True)
        return places


def _mover(places: dict[str, Path], root: Path):
    """A function that moves a sandbox path (a mount target, or below /tmp) into `root`."""
    targets = sorted([*places, "/tmp"], key=len, reverse=True)

    def move(value: str, inside: bool = False) -> str:
        for target in targets:
            if value == target or value.startswith(target + "/"):
                return str(root / target.lstrip("/")) + value[len(target):]
            if inside and f"'{target}'" in value:  # the runner's bootstrap names its folder in quotes
                return value.replace(f"'{target}'", repr(str(root / target.lstrip("/"))))
        return value

    return move


def _moved(value, move):
    if isinstance(value, str):
        return move(value)
    if isinstance(value, dict):
        return {k: _moved(v, move) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, move) for v in value]
    return value


class LocalPlacer(Placer):
    """A Placer whose every backend is the LocalSandbox (fast mode and provisional GPU work as usual)."""

    def sandbox(self, name, runtime, backend):
        return LocalSandbox()
