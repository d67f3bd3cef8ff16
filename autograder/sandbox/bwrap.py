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
from pathlib import Path

from autograder.errors import SandboxError
from autograder.sandbox import cgroups, host, seccomp
from autograder.sandbox.base import ExitReason, Mount, RunResult, RunSpec, limits_record
from autograder.sandbox.cgroups import RunGroup
from autograder.sandbox.process import supervise

SECCOMP_FD = 9  # the shell opens the filter here; bwrap reads and closes it


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
            identity = host.identity_files(Path(etc), uid)
            filter_file = Path(etc) / "seccomp.bpf"  # not mounted: only passwd and group go in
            filter_file.write_bytes(self._seccomp)
            argv = [*self._prlimit(spec, use_rlimit_memory=group is None), *self._bwrap(spec, uid, identity)]
            argv = _launcher(group.procs_files() if group else [], filter_file, argv)
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

    def _group(self, spec: RunSpec) -> RunGroup | None:
        if not self.cgroups.usable:
            return None  # allowed weak limits (the constructor refuses otherwise): recorded as rlimit-weak
        limits = cgroups.GroupLimits(spec.limits.memory_mb, spec.limits.pids, spec.limits.cpus)
        try:
            return self.cgroups.create(limits)
        except OSError as exc:
            raise SandboxError(f"bwrap backend: cannot create the run's cgroup ({exc})") from exc

    def _prlimit(self, spec: RunSpec, use_rlimit_memory: bool) -> list[str]:
        limits = spec.limits
        argv = [
            "prlimit",
            f"--fsize={limits.file_size_mb * 1024 * 1024}",
            f"--cpu={limits.cpu_seconds}",
            "--core=0",
            # Counted per uid: each worker slot has its own uid, so slots do not share the budget.
            f"--nproc={limits.pids}",
        ]
        if use_rlimit_memory:
            argv.append(f"--as={limits.memory_mb * 1024 * 1024}")
        return [*argv, "--"]

    def _bwrap(self, spec: RunSpec, uid: int, identity: list[Mount]) -> list[str]:
        scratch_bytes = str(spec.limits.scratch_mb * 1024 * 1024)
        argv = [
            "bwrap",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox",
            "--clearenv", "--seccomp", str(SECCOMP_FD),
        ]
        system_parents: set[str] = {"/"}
        for directory in host.system_dirs():
            # Parents such as /var/lib (for /var/lib/texmf) made 0755: bwrap would make them 0700 as root.
            argv += _ensure_parents(directory, system_parents) + ["--ro-bind", directory, directory]
        for link in host.MERGED_USR_LINKS:
            path = Path(link)
            if path.is_symlink():
                argv += ["--symlink", os.readlink(path), link]
            elif path.is_dir():
                argv += ["--ro-bind", link, link]
        for secret in host.SECRET_ETC_FILES:
            if Path(secret).exists():
                argv += ["--ro-bind", "/dev/null", secret]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        # bwrap mounts as root: writable folders get mode 1777 so the unprivileged uid can write them.
        for tmp in ("/dev/shm", "/tmp"):
            argv += ["--perms", "1777", "--size", scratch_bytes, "--tmpfs", tmp]
        if spec.gpu:
            for device in sorted(Path("/dev").glob("nvidia*")):
                argv += ["--dev-bind", str(device), str(device)]
        created: set[str] = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev", "/var", "/var/lib"}
        # The scratch first, so that mounts placed inside it (e.g. data) land on top of it.
        argv += _ensure_parents(spec.scratch, created)
        argv += ["--perms", "1777", "--size", scratch_bytes, "--tmpfs", spec.scratch]
        created.add(spec.scratch)
        for source in host.python_dirs():
            argv += _ensure_parents(source, created) + ["--ro-bind", source, source]
        for masked in host.masked_python_files():  # an editable install's finder: no path to the repository
            argv += ["--ro-bind", "/dev/null", masked]
        for mount in [*identity, *spec.mounts]:
            argv += _ensure_parents(mount.target, created)
            argv += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
        argv += ["--chdir", spec.scratch]
        environment = {"PATH": host.path_variable(), "HOME": "/tmp"}
        environment.update(spec.environment)
        for key, value in environment.items():
            argv += ["--setenv", key, value]
        argv += [
            "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
        ]
        command = list(spec.argv)
        if command and command[0] == "python":
            command[0] = host.interpreter()
        return argv + command


def _ensure_parents(target: str, created: set[str]) -> list[str]:
    """--dir entries (mode 0755) for the missing ancestors of target; bwrap would make them 0700 as root."""
    argv: list[str] = []
    parents = list(Path(target).parents)[::-1]
    for parent in parents:
        text = str(parent)
        if text in created:
            continue
        created.add(text)
        argv += ["--perms", "0755", "--dir", text]
    return argv


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
