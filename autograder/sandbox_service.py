"""grader-sandbox: the privileged half of the privilege split, the only part of the grader that runs as root.

The grader runs as an ordinary user and starts this launcher through sudo with one fixed command line
(`grader-sandbox --config /srv/course/grader.toml`) for each sandbox run. It reads one request as size-capped
JSON on standard input (autograder/sandbox/launcher.py holds the wire format), checks it, runs it with the
configured backend and writes the RunResult as JSON on standard output. A refused request or a failure is one
line on standard error and a non-zero exit (ExitStatus).

The caller is not trusted, and neither is the course's grader.toml (the caller owns it). So what protects the
host does not rest on either:
- every mount source is opened as the calling user (sudo's SUDO_UID), and the sandbox binds the opened file
  through /proc/<pid>/fd: a run sees only what its caller could read anyway, and renaming or swapping a path
  after the check changes nothing. Sources must also lie below the course's runs, assignments or offline-data
  folder; mounts are read-only, targets come from a fixed list;
- the command and the environment are exactly those the execute stage uses (a PATH or LD_PRELOAD of the
  caller's choosing would reach setpriv, which still runs as root inside bwrap);
- the sandbox uids are neither root, nor the caller, nor any account of this host.
The limits, the slot and the backend are checked against grader.toml; they bound the caller's use of the
machine, they protect nothing from it.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import pwd
import signal
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from autograder import execute
from autograder.config import Config, invoking_user, load_config
from autograder.errors import GraderError
from autograder.sandbox import Limits, Mount, RunSpec, get_sandbox
from autograder.sandbox.launcher import MAX_REQUEST_BYTES, PROTOCOL, WireError, result_to_wire, spec_from_wire

BACKENDS = ("bwrap",)  # podman and docker mount by path name: not yet through the launcher
MOUNT_TARGETS = (execute.INPUT_DIR, execute.DATA_DIR, execute.OFFLINE_DIR, execute.JOB_FILE, execute.PROBE_FILE,
                 execute.PROBE_DATA_DIR, execute.FACTS_FILE, execute.RUNNER_LIB, execute.KEPT_FILE)
READY_ARGV = ["python", "-I", "-c", "print('ok')"]  # execute.ensure_sandbox_ready's
MAX_ENVIRONMENT_VALUE = 4096


class ExitStatus(enum.IntEnum):
    """The launcher's exit status; never renumber."""

    OK = 0  # the answer is on standard output
    REFUSED = 2  # the request broke a rule: nothing ran
    FAILED = 3  # the backend could not be set up or started (a GraderError)
    INTERRUPTED = 4  # SIGINT or SIGTERM (passed on by sudo): the sandbox was ended, the run has no outcome


class Refused(Exception):
    """Raised when a request breaks one of the launcher's rules; the message is the one line the caller sees."""


@dataclass(frozen=True)
class Caller:
    """Who asked: the user sudo ran us for (root when started by root directly)."""

    uid: int
    gid: int

    @property
    def name(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)


def main(argv: list[str] | None = None) -> int:
    """Console entry point `grader-sandbox`: answer one request, return an ExitStatus."""
    parser = argparse.ArgumentParser(prog="grader-sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="The course's grader.toml (fixed in sudoers).")
    parser.add_argument("--check", action="store_true", help="Only check that sandboxes can be built; no stdin.")
    args = parser.parse_args(argv)
    # sudo passes SIGTERM on: end the sandbox as Ctrl-C would (supervise's finally kills bwrap and its cgroup).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    caller = Caller(*(invoking_user() or (os.getuid(), os.getgid())))
    try:
        request = {"protocol": PROTOCOL, "check": True} if args.check else _read_request(sys.stdin.buffer)
        with _as_user(caller):  # the course's files are the caller's: read them with the caller's rights
            config = load_config(args.config)
        answer = serve(config, caller, request)
    except Refused as exc:
        print(f"grader-sandbox: refused: {exc}", file=sys.stderr)
        return ExitStatus.REFUSED
    except GraderError as exc:
        print(f"grader-sandbox: {exc}", file=sys.stderr)
        return ExitStatus.FAILED
    except KeyboardInterrupt:
        print("grader-sandbox: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return ExitStatus.OK


def serve(config: Config, caller: Caller, request: dict) -> dict:
    """Check the request against the rules and answer it: a check's facts, or a run's RunResult."""
    unknown = sorted(set(request) - {"protocol", "check", "allow_weak_limits", "spec"})
    if unknown or request.get("protocol") != PROTOCOL:
        raise Refused(f"not a protocol {PROTOCOL} request" + (f" (unknown field {unknown[0]!r})" if unknown else ""))
    weak, check = request.get("allow_weak_limits", False), request.get("check", False)
    if not isinstance(weak, bool) or not isinstance(check, bool):
        raise Refused("allow_weak_limits and check must be true or false")
    slots = _slots(config)
    _check_uids(config, caller, slots)
    backend_name = config.sandbox.backend
    if backend_name not in BACKENDS:
        raise Refused(f"backend {backend_name!r} is not available through the launcher (only: {', '.join(BACKENDS)})")
    if check:
        sandbox = get_sandbox(backend_name, uid_base=config.sandbox.uid, allow_weak_limits=weak)
        return _check_answer(config, caller, sandbox, slots)
    try:
        spec = spec_from_wire(request.get("spec"))
    except WireError as exc:
        raise Refused(f"malformed spec: {exc}") from None
    _check_spec(config, spec, slots)
    with _opened_sources(config, caller, spec.mounts) as mounts:  # every rule checked before the backend is built
        sandbox = get_sandbox(backend_name, uid_base=config.sandbox.uid, allow_weak_limits=weak)
        result = sandbox.run(replace(spec, mounts=mounts))
    return result_to_wire(result)


def _read_request(stream) -> dict:
    raw = stream.read(MAX_REQUEST_BYTES + 1)
    if len(raw) > MAX_REQUEST_BYTES:
        raise Refused(f"request larger than {MAX_REQUEST_BYTES} bytes")
    try:
        request = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refused("request is not JSON") from None
    if not isinstance(request, dict):
        raise Refused("request is not a JSON object")
    return request


def _check_answer(config: Config, caller: Caller, sandbox, slots: int) -> dict:
    limits = sandbox.cgroups.version if sandbox.cgroups.usable else "rlimit-weak"
    first, last = config.sandbox.uid, config.sandbox.uid + slots - 1
    return {
        "backend": sandbox.name, "runtime_id": sandbox.runtime_id(), "uids": [first, last], "limits": limits,
        "caller": f"{caller.name} (uid {caller.uid})",
        "as_root": f"bwrap's mounts, setpriv to uids {first}-{last}, {limits} limits",
    }


def _slots(config: Config) -> int:
    """How many runs at once the course may have: its workers, else (chosen per machine) at most the cores."""
    return config.sandbox.workers or os.cpu_count() or 1


def _check_uids(config: Config, caller: Caller, slots: int) -> None:
    for uid in range(config.sandbox.uid, config.sandbox.uid + slots):
        if uid == caller.uid:
            raise Refused(f"sandbox uid {uid} is the caller's own uid ([sandbox] uid in {config.source})")
        try:
            account = pwd.getpwuid(uid).pw_name
        except KeyError:
            continue
        raise Refused(f"sandbox uid {uid} belongs to the account {account!r}: choose a free range ([sandbox] uid)")


def _check_spec(config: Config, spec: RunSpec, slots: int) -> None:
    if not 0 <= spec.slot < slots:
        raise Refused(f"slot {spec.slot} outside 0..{slots - 1} ([sandbox] workers)")
    if spec.gpu:
        raise Refused("gpu runs are not available through the launcher")
    if spec.scratch != RunSpec.__dataclass_fields__["scratch"].default:
        raise Refused(f"scratch {spec.scratch!r} is not the sandbox's working folder")
    if spec.argv not in (READY_ARGV, [*execute.RUNNER_ARGV, execute.JOB_FILE]) and not _is_facts_command(spec.argv):
        raise Refused(f"command {' '.join(spec.argv)[:200]!r} is not one the grader runs")
    if spec.environment and spec.environment != execute.sandbox_environment(spec.limits):
        raise Refused("environment differs from the sandbox's own")
    targets = [m.target for m in spec.mounts]
    for mount in spec.mounts:
        if mount.target not in MOUNT_TARGETS:
            raise Refused(f"mount target {mount.target!r} is not one of {', '.join(MOUNT_TARGETS)}")
        if mount.writable:
            raise Refused(f"mount at {mount.target} is writable: every mount is read-only")
        if targets.count(mount.target) > 1:
            raise Refused(f"mount target {mount.target!r} given twice")
    _check_limits(config, spec.limits)


def _is_facts_command(argv: list[str]) -> bool:
    return (len(argv) == 5 and argv[:4] == ["python", "-I", execute.FACTS_FILE, execute.INPUT_DIR]
            and not argv[4].startswith("-"))


def _check_limits(config: Config, limits: Limits) -> None:
    """Each limit at most what grader.toml allows (or the sandbox's default, which the readiness check uses)."""
    sandbox = config.sandbox
    notebooks = [(task, nb) for task in config.tasks.values() for nb in task.notebooks]
    memory = max([nb.memory_mb or task.memory_mb for task, nb in notebooks] or [0])
    timeout = max([nb.notebook_timeout or task.notebook_timeout for task, nb in notebooks] or [0])
    kept = max([nb.keep_mb * 1024 * 1024 + execute.KEEP_MARGIN_BYTES for _, nb in notebooks if nb.keep] or [0])
    default = Limits()
    bounds = {
        "memory_mb": max(default.memory_mb, memory),
        "pids": max(default.pids, sandbox.pids),
        "cpu_seconds": max(default.cpu_seconds, int(timeout * 4) + 60),
        "file_size_mb": max(default.file_size_mb, sandbox.file_size_mb),
        "scratch_mb": max(default.scratch_mb, sandbox.scratch_mb),
        "wall_seconds": max(default.wall_seconds, timeout + sandbox.grace_seconds + 30),
        "output_bytes": max(default.output_bytes, sandbox.output_mb * 1024 * 1024 + kept),  # + a kept folder's tar
        "cpus": float(os.cpu_count() or 1),
    }
    for name, bound in bounds.items():
        value = getattr(limits, name)
        if not 0 < value <= bound:
            raise Refused(f"limit {name} = {value} outside (0, {bound}] (grader.toml's bounds)")


@contextmanager
def _opened_sources(config: Config, caller: Caller, mounts: list[Mount]) -> Iterator[list[Mount]]:
    """The mounts with each source opened as the caller and named by its descriptor (/proc/<pid>/fd/<n>), so
    bwrap binds exactly the file checked here, whatever happens to the path afterwards."""
    roots = _allowed_roots(config, caller)
    descriptors: list[int] = []
    try:
        opened = []
        for mount in mounts:
            fd = _open_as(caller, mount.source)
            descriptors.append(fd)
            real = Path(os.readlink(f"/proc/self/fd/{fd}"))
            if not any(real == root or root in real.parents for root in roots):
                raise Refused(f"mount source {mount.source} is outside the course's runs, assignments and "
                              "offline-data folders")
            opened.append(Mount(Path(f"/proc/{os.getpid()}/fd/{fd}"), mount.target))
        yield opened
    finally:
        for fd in descriptors:
            os.close(fd)


def _allowed_roots(config: Config, caller: Caller) -> list[Path]:
    paths = (config.paths.runs, config.paths.assignments, config.paths.offline_data)
    with _as_user(caller):
        return [Path(os.path.realpath(config.path(p))) for p in paths]


def _open_as(caller: Caller, source: Path) -> int:
    with _as_user(caller):
        try:  # O_NONBLOCK: a FIFO must not hang the launcher; it is refused below
            fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise Refused(f"mount source {source}: the caller cannot read it ({exc.strerror})") from None
    if not stat.S_ISDIR(os.fstat(fd).st_mode) and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Refused(f"mount source {source} is neither a folder nor a regular file")
    return fd


@contextmanager
def _as_user(caller: Caller) -> Iterator[None]:
    """Act with the caller's file-access rights (effective ids and groups) for the block, then root's again."""
    if os.geteuid() != 0 or caller.uid == 0:
        yield
        return
    groups = os.getgroups()
    try:
        name = pwd.getpwuid(caller.uid).pw_name
        caller_groups = os.getgrouplist(name, caller.gid)
    except KeyError:
        caller_groups = [caller.gid]
    os.setgroups(caller_groups)
    os.setegid(caller.gid)
    os.seteuid(caller.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)


def console_main() -> None:
    """The `grader-sandbox` console script."""
    sys.exit(int(main()))


if __name__ == "__main__":
    console_main()
