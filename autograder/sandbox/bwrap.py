"""The default backend: bubblewrap on this machine, with the grader's own Python environment read-only inside.

Layout inside: /usr, /etc and the Python environment read-only; /proc of a new PID namespace; a minimal /dev;
tmpfs at the scratch folder, /tmp and /dev/shm (size-limited and charged to the memory limit); the mounts of
the RunSpec; nothing else (no /home, /root, /var, no repository, no database). bwrap runs as root only to set
the mounts up; the command itself runs through `setpriv` as an unprivileged uid with no capabilities and
no_new_privs, in new network (loopback only), PID, IPC and UTS namespaces, under a seccomp filter
(autograder/sandbox/seccomp.py). Memory, process and CPU-share limits come from a per-run cgroup (v1 or v2);
where none can be made the backend refuses to start, unless told to allow weak limits: then memory and
processes are rlimits only (per process, per uid) and there is no CPU share, and each run says so
(details["limits"] = "rlimit-weak"). File size and CPU time are always rlimits as well.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autograder.errors import SandboxError
from autograder.sandbox import cgroups, host, seccomp
from autograder.sandbox.base import ExitReason, Mount, RunResult, RunSpec, limits_record
from autograder.sandbox.cgroups import RunGroup
from autograder.sandbox.process import supervise

SECCOMP_FD = 9  # the shell opens the filter here; bwrap reads and closes it
PRLIMIT_OPTIONS = {"RLIMIT_FSIZE": "fsize", "RLIMIT_CPU": "cpu", "RLIMIT_CORE": "core", "RLIMIT_NPROC": "nproc",
                   "RLIMIT_AS": "as"}


class BwrapSandbox:
    """Run commands under bubblewrap with the grader's Python environment; see the module docstring."""

    name = "bwrap"

    def __init__(self, uid_base: int = 61000, runtime_id: str | None = None, allow_weak_limits: bool = False) -> None:
        for tool in ("bwrap", "setpriv", "prlimit"):
            if shutil.which(tool) is None:
                raise SandboxError(f"bwrap backend: {tool!r} not found (install: apt-get install bubblewrap util-linux)")
        if os.geteuid() != 0:
            raise SandboxError("bwrap backend: the grader must run as root to drop student code to another uid")
        self.uid_base = uid_base
        self._runtime_id = runtime_id or host.environment_id()
        self.cgroups = cgroups.hierarchy()
        if not self.cgroups.usable and not allow_weak_limits:
            raise SandboxError(f"bwrap backend: limits cannot be enforced: {'; '.join(self.cgroups.problems)} "
                               "(or grade with --allow-weak-limits)")
        self._seccomp = seccomp.program()
        self.cgroups.sweep_stale()

    def runtime_id(self) -> str:
        return self._runtime_id

    def run(self, spec: RunSpec) -> RunResult:
        uid = self.uid_base + spec.slot
        group = self._group(spec)
        with tempfile.TemporaryDirectory(prefix="grader-etc-") as etc:
            argv = self._command(spec, uid, Path(etc), group)
            try:
                outcome = supervise(
                    argv,
                    wall_seconds=spec.limits.wall_seconds,
                    output_bytes=spec.limits.output_bytes,
                    kill=lambda proc: _kill(proc, group),
                )
            finally:
                oom = group.oom_killed() if group else False
                peak = group.peak_mb() if group else None
                limit_reached = group.limit_reached() if group else False
                if group:
                    group.remove()
        reason = outcome.reason
        if oom and reason in (ExitReason.OK, ExitReason.ERROR, ExitReason.KILLED):
            reason = ExitReason.MEMORY
        return RunResult(
            reason=reason,
            exit_code=outcome.exit_code,
            stdout=outcome.stdout,
            stderr_tail=outcome.stderr_tail,
            wall_seconds=outcome.wall_seconds,
            memory_peak_mb=peak,
            memory_limit_reached=limit_reached,
            details={"uid": str(uid), **limits_record(spec.limits, group.version if group else "rlimit-weak")},
        )

    def _command(self, spec: RunSpec, uid: int, folder: Path, group: RunGroup | None) -> list[str]:
        """The command that builds the sandbox and runs spec.argv in it; `folder` is the run's private folder
        on the host (removed when the run ends)."""
        identity, filter_file = self._run_files(folder, uid)
        prlimit = ["prlimit", *(f"--{PRLIMIT_OPTIONS[name]}={value}" for name, value in
                                rlimits(spec, use_rlimit_memory=group is None).items()), "--"]
        return _launcher(group.procs_files() if group else [], filter_file,
                         [*prlimit, *self._bwrap(spec, uid, identity)])

    def _run_files(self, folder: Path, uid: int) -> tuple[list[Mount], Path]:
        """The run's passwd and group files (mounted) and its seccomp filter (not mounted), written to folder."""
        filter_file = folder / "seccomp.bpf"
        filter_file.write_bytes(self._seccomp)
        return host.identity_files(folder, uid), filter_file

    def _group(self, spec: RunSpec) -> RunGroup | None:
        if not self.cgroups.usable:
            return None  # allowed weak limits (the constructor refuses otherwise): recorded as rlimit-weak
        limits = cgroups.GroupLimits(spec.limits.memory_mb, spec.limits.pids, spec.limits.cpus)
        try:
            return self.cgroups.create(limits)
        except OSError as exc:
            raise SandboxError(f"bwrap backend: cannot create the run's cgroup ({exc})") from exc

    def _bwrap(self, spec: RunSpec, uid: int, identity: list[Mount]) -> list[str]:
        argv = [
            "bwrap",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--clearenv", "--seccomp", str(SECCOMP_FD),
        ]
        for step in mount_plan(spec, identity):
            argv += step.bwrap_options()
        argv += ["--chdir", spec.scratch]
        for key, value in sandbox_environment(spec).items():
            argv += ["--setenv", key, value]
        argv += [
            "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        ]
        command = list(spec.argv)
        if command and command[0] == "python":
            command[0] = host.interpreter()
        return argv + command


def rlimits(spec: RunSpec, use_rlimit_memory: bool) -> dict[str, int]:
    """The per-process limits (resource module names) that hold whatever else holds: file size, CPU time, no
    core dumps, processes per uid (each worker slot has its own uid, so slots do not share the budget), and
    the address space where no cgroup limits memory."""
    limits = spec.limits
    chosen = {"RLIMIT_FSIZE": limits.file_size_mb * 1024 * 1024, "RLIMIT_CPU": limits.cpu_seconds,
              "RLIMIT_CORE": 0, "RLIMIT_NPROC": limits.pids}
    if use_rlimit_memory:
        chosen["RLIMIT_AS"] = limits.memory_mb * 1024 * 1024
    return chosen


@dataclass(frozen=True)
class MountStep:
    """One step of building a sandbox's root, in order; bwrap's option of the same name does it for the bwrap
    backend, autograder/sandbox/zygote.py for the fork backend."""

    kind: str  # dir, symlink, bind, tmpfs, proc, dev, dev-bind
    target: str
    source: str = ""  # bind: the host path; symlink: the link's text
    writable: bool = False
    mode: str = "0755"  # dir, tmpfs
    size: int = 0  # tmpfs: bytes

    def bwrap_options(self) -> list[str]:
        if self.kind == "dir":
            return ["--perms", self.mode, "--dir", self.target]
        if self.kind == "symlink":
            return ["--symlink", self.source, self.target]
        if self.kind == "bind":
            return ["--bind" if self.writable else "--ro-bind", self.source, self.target]
        if self.kind == "dev-bind":
            return ["--dev-bind", self.source, self.target]
        if self.kind == "tmpfs":
            return ["--perms", self.mode, "--size", str(self.size), "--tmpfs", self.target]
        return [f"--{self.kind}", self.target]  # proc, dev


def mount_plan(spec: RunSpec, identity: list[Mount]) -> list[MountStep]:
    """The sandbox's whole file system, in the order it is built (see the module docstring)."""
    scratch_bytes = spec.limits.scratch_mb * 1024 * 1024
    steps: list[MountStep] = []
    system_parents: set[str] = {"/"}
    for directory in host.system_dirs():
        # Parents such as /var/lib (for /var/lib/texmf) made 0755: bwrap would make them 0700 as root.
        steps += _ensure_parents(directory, system_parents) + [MountStep("bind", directory, directory)]
    for link in host.MERGED_USR_LINKS:
        path = Path(link)
        if path.is_symlink():
            steps.append(MountStep("symlink", link, os.readlink(path)))
        elif path.is_dir():
            steps.append(MountStep("bind", link, link))
    for secret in host.SECRET_ETC_FILES:
        if Path(secret).exists():
            steps.append(MountStep("bind", secret, "/dev/null"))
    steps += [MountStep("proc", "/proc"), MountStep("dev", "/dev")]
    # Mounted as root: writable folders get mode 1777 so the unprivileged uid can write them.
    steps += [MountStep("tmpfs", tmp, mode="1777", size=scratch_bytes) for tmp in ("/dev/shm", "/tmp")]
    if spec.gpu:
        steps += [MountStep("dev-bind", str(device), str(device)) for device in sorted(Path("/dev").glob("nvidia*"))]
    created: set[str] = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev", "/var", "/var/lib"}
    # The scratch first, so that mounts placed inside it (e.g. data) land on top of it.
    steps += _ensure_parents(spec.scratch, created)
    steps.append(MountStep("tmpfs", spec.scratch, mode="1777", size=scratch_bytes))
    created.add(spec.scratch)
    for source in host.python_dirs():
        steps += _ensure_parents(source, created) + [MountStep("bind", source, source)]
    for masked in host.masked_python_files():  # an editable install's finder: no path to the repository
        steps.append(MountStep("bind", masked, "/dev/null"))
    for mount in [*identity, *spec.mounts]:
        steps += _ensure_parents(mount.target, created)
        steps.append(MountStep("bind", mount.target, str(mount.source), writable=mount.writable))
    return steps


def sandbox_environment(spec: RunSpec) -> dict[str, str]:
    """The command's whole environment: a PATH of the system and the grader's environment, HOME in /tmp, and
    the RunSpec's own."""
    return {"PATH": host.path_variable(), "HOME": "/tmp", **spec.environment}


def _ensure_parents(target: str, created: set[str]) -> list[MountStep]:
    """Folders (mode 0755) for the missing ancestors of target; bwrap would make them 0700 as root."""
    steps: list[MountStep] = []
    for parent in list(Path(target).parents)[::-1]:
        text = str(parent)
        if text in created:
            continue
        created.add(text)
        steps.append(MountStep("dir", text))
    return steps


def _launcher(procs_files: list[str], filter_file: Path, argv: list[str]) -> list[str]:
    """Prefix argv with a shell that moves itself into the cgroups, then execs argv (so the pid stays) with the
    seccomp program open on SECCOMP_FD for bwrap."""
    script = (f'bpf=$1; shift; while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; '
              f'exec "$@" {SECCOMP_FD}< "$bpf"')
    return ["/bin/sh", "-c", script, "sh", str(filter_file), *procs_files, "--", *argv]


def _kill(proc: subprocess.Popen, group: RunGroup | None) -> None:
    """End the whole sandbox: bwrap dies, --die-with-parent takes its children, the cgroup takes the rest."""
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    if group is not None:
        group.kill_all()
