"""The grader's half of the privilege split: a Sandbox that hands each RunSpec to the privileged launcher.

A grader that runs as an ordinary user cannot build a sandbox itself (bwrap's mounts, the switch to the sandbox
uid and the cgroup writes need root). `[sandbox] launcher` names a command, typically
`sudo -n /opt/grader/.venv/bin/grader-sandbox --config /srv/course/grader.toml`, that runs one request as root:
the request goes in as size-capped JSON on its standard input, the RunResult comes back as JSON on its standard
output (stdout bytes base64-encoded), a refusal or a failure as one line on standard error and a non-zero exit.
Same seam, another process, like httpx's transports; the launcher itself is autograder/sandbox_service.py.

The wire format lives here, next to the one client, and is validated on both sides: nothing crossing the
boundary is trusted to have the right shape.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import subprocess
from dataclasses import asdict
from pathlib import Path

from autograder.errors import SandboxError
from autograder.sandbox.base import ExitReason, Limits, Mount, RunResult, RunSpec
from autograder.sandbox.process import RunCancelled, listed

PROTOCOL = 1
INTERRUPTED = 4  # the launcher's exit status when SIGINT/SIGTERM ended its run (sandbox_service.ExitStatus)
MAX_REQUEST_BYTES = 1024 * 1024  # a RunSpec is a few kB; anything near this is not one
CHECK_TIMEOUT_SECONDS = 120  # the check builds the backend (cgroups, seccomp filter) and answers
RESULT_MARGIN_SECONDS = 120  # the launcher enforces the wall clock itself; this is a backstop
INTERRUPT_SECONDS = 10  # how long the launcher may take to end its sandbox after SIGTERM


class LauncherSandbox:
    """A Sandbox whose runs happen in the privileged launcher process; see the module docstring."""

    def __init__(self, command: list[str], backend: str, allow_weak_limits: bool = False) -> None:
        if not command:
            raise SandboxError("sandbox launcher: [sandbox] launcher is empty")
        self.command = list(command)
        self.allow_weak_limits = allow_weak_limits
        self.answer = check(self.command, allow_weak_limits)
        # The backend that really runs, as cache keys and records name it: the launcher's, the one asked for.
        self.name = str(self.answer["backend"])
        if self.name != backend:
            raise SandboxError(f"sandbox launcher runs the {self.name!r} backend, not {backend!r} "
                               "(the launcher's grader.toml decides)")

    def runtime_id(self) -> str:
        return str(self.answer["runtime_id"])

    def run(self, spec: RunSpec) -> RunResult:
        request = {"protocol": PROTOCOL, "allow_weak_limits": self.allow_weak_limits, "spec": spec_to_wire(spec)}
        cap = spec.limits.output_bytes * 4 // 3 + MAX_REQUEST_BYTES  # base64 of the stdout, and the rest
        answer = _call(self.command, request, spec.limits.wall_seconds + RESULT_MARGIN_SECONDS, cap)
        return result_from_wire(answer)


def check(command: list[str], allow_weak_limits: bool = False) -> dict:
    """Ask the launcher whether it can run sandboxes; its answer names the backend, uids and limits in force."""
    answer = _call(command, {"protocol": PROTOCOL, "check": True, "allow_weak_limits": allow_weak_limits},
                   CHECK_TIMEOUT_SECONDS, MAX_REQUEST_BYTES)
    for key in ("backend", "runtime_id", "uids", "limits", "caller"):
        if key not in answer:
            raise SandboxError(f"sandbox launcher {command[0]}: its check answer has no {key!r}")
    return answer


def _call(command: list[str], request: dict, timeout: float, cap: int) -> dict:
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise SandboxError(f"sandbox launcher {command[0]}: cannot start ({exc.strerror})") from exc
    with listed(proc, _interrupt) as live:  # Ctrl-C in the grader (terminate_all) ends the launcher's run too
        try:
            stdout, stderr = proc.communicate(json.dumps(request).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            _interrupt(proc)
            proc.communicate()
            raise SandboxError(f"sandbox launcher {command[0]}: no answer within {timeout:.0f} s") from None
    if proc.returncode == INTERRUPTED or live.cancelled:  # the launcher ended its run on a signal: no outcome
        raise RunCancelled(f"sandbox launcher {command[0]}: the run was interrupted")
    if proc.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"]
        raise SandboxError(f"sandbox launcher: {lines[-1][:500]}")
    if len(stdout) > cap:
        raise SandboxError(f"sandbox launcher {command[0]}: answer larger than {cap} bytes")
    try:
        answer = json.loads(stdout)
    except ValueError:
        raise SandboxError(f"sandbox launcher {command[0]}: its answer is not JSON") from None
    if not isinstance(answer, dict):
        raise SandboxError(f"sandbox launcher {command[0]}: its answer is not a JSON object")
    return answer


def _interrupt(proc: subprocess.Popen) -> None:
    """SIGTERM, never SIGKILL: sudo passes it on to the launcher, which ends the sandbox and exits; a killed sudo
    would leave the launcher's run going until its wall clock."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=INTERRUPT_SECONDS)


# --- The wire format: RunSpec and RunResult as JSON ---------------------------------------------------------

class WireError(ValueError):
    """Raised when a request or answer does not have the shape of a RunSpec or RunResult."""


def spec_to_wire(spec: RunSpec) -> dict:
    """A RunSpec as plain JSON data."""
    data = asdict(spec)
    data["mounts"] = [{"source": str(m.source), "target": m.target, "writable": m.writable} for m in spec.mounts]
    return data


def spec_from_wire(data: object) -> RunSpec:
    """A RunSpec from JSON data, every field checked for its type; unknown fields are refused."""
    fields = _object(data, "spec", {"argv", "environment", "mounts", "scratch", "limits", "slot", "gpu",
                                     "warm"})
    limits = _object(fields.get("limits", {}), "limits", set(Limits.__dataclass_fields__))
    checked_limits = {}
    for key, value in limits.items():
        kind = float if key in ("wall_seconds", "cpus") else int
        if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)):
            raise WireError(f"limits.{key} must be a number")
        checked_limits[key] = kind(value)
    mounts = []
    for item in _list(fields.get("mounts", []), "mounts"):
        mount = _object(item, "mount", {"source", "target", "writable"})
        source, target = _text(mount.get("source"), "mount source"), _text(mount.get("target"), "mount target")
        mounts.append(Mount(Path(source), target, _flag(mount.get("writable", False), "mount writable")))
    environment = _object(fields.get("environment", {}), "environment", None)
    slot = fields.get("slot", 0)
    if isinstance(slot, bool) or not isinstance(slot, int):
        raise WireError("slot must be an integer")
    return RunSpec(
        argv=[_text(a, "argv item") for a in _list(fields.get("argv"), "argv")],
        environment={_text(k, "environment name"): _text(v, "environment value") for k, v in environment.items()},
        mounts=mounts,
        scratch=_text(fields.get("scratch", RunSpec.__dataclass_fields__["scratch"].default), "scratch"),
        limits=Limits(**checked_limits),
        slot=slot,
        gpu=_flag(fields.get("gpu", False), "gpu"),
        warm=_flag(fields.get("warm", False), "warm"),
    )


def result_to_wire(result: RunResult) -> dict:
    """A RunResult as plain JSON data, stdout base64-encoded."""
    data = asdict(result)
    data["reason"] = result.reason.value
    data["stdout"] = base64.b64encode(result.stdout).decode("ascii")
    return data


def result_from_wire(data: object) -> RunResult:
    """A RunResult from JSON data; a malformed one is the launcher's fault, a SandboxError."""
    try:
        fields = _object(data, "result", set(RunResult.__dataclass_fields__))
        details = _object(fields.get("details", {}), "details", None)
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in details.values()):
            raise WireError("details must map names to strings or numbers")
        exit_code = fields.get("exit_code")
        peak = fields.get("memory_peak_mb")
        if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
            raise WireError("exit_code must be an integer or null")
        if peak is not None and (isinstance(peak, bool) or not isinstance(peak, (int, float))):
            raise WireError("memory_peak_mb must be a number or null")
        wall = fields.get("wall_seconds")
        if isinstance(wall, bool) or not isinstance(wall, (int, float)):
            raise WireError("wall_seconds must be a number")
        return RunResult(
            reason=ExitReason(fields.get("reason")),
            exit_code=exit_code,
            stdout=base64.b64decode(_text(fields.get("stdout"), "stdout"), validate=True),
            stderr_tail=_text(fields.get("stderr_tail"), "stderr_tail"),
            wall_seconds=float(wall),
            memory_peak_mb=None if peak is None else float(peak),
            memory_limit_reached=_flag(fields.get("memory_limit_reached", False), "memory_limit_reached"),
            details=details,
        )
    except (WireError, ValueError) as exc:  # ExitReason and b64decode raise ValueError subclasses
        raise SandboxError(f"sandbox launcher: malformed result ({exc})") from None


def _object(value: object, what: str, allowed: set[str] | None) -> dict:
    if not isinstance(value, dict):
        raise WireError(f"{what} must be a JSON object")
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise WireError(f"{what} has unknown field {unknown[0]!r}")
    return value


def _list(value: object, what: str) -> list:
    if not isinstance(value, list):
        raise WireError(f"{what} must be a JSON list")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise WireError(f"{what} must be a string")
    return value


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise WireError(f"{what} must be true or false")
    return value
