"""Container backends: podman and docker, one command line for both.

A runtime is an image pinned by digest (grader.toml [runtimes.*].image = "NAME@sha256:…", built from package
registries by runtimes/build.sh); the image present locally must have exactly that digest, or the backend
refuses to start. Without an image, podman runs from a root filesystem instead (`--rootfs`): by
default a skeleton folder that holds nothing but mount points, into which this machine's system folders and
the grader's Python environment are mounted read-only, so the container sees no more than bwrap shows.

Every container runs with no network, a read-only root, an unprivileged uid, no capabilities and
no-new-privileges, the engine's default seccomp profile, memory (no extra swap), CPU share (--cpus), PID and
ulimit limits, size-limited tmpfs for the scratch, /tmp and /dev/shm, and the GPU only for gpu runtimes. The
container is named per run so that the wall clock can remove it (killing the `run` client alone would leave it
running) and so that its OOM flag can be read.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from autograder.errors import SandboxError
from autograder.sandbox import host
from autograder.sandbox import cgroups
from autograder.sandbox.base import ExitReason, Mount, RunResult, RunSpec, limits_record
from autograder.sandbox.process import supervise

_counter = itertools.count()
DEFAULT_ROOTFS = Path("/var/tmp/notebook-grader-rootfs")


class ContainerSandbox:
    """The shared command line; subclasses name the engine and its few engine-specific flags."""

    name = "container"
    engine = ""

    def __init__(self, uid_base: int = 61000, image: str = "", rootfs: Path | None = None,
                 runtime_id: str | None = None, allow_weak_limits: bool = False, gpu: bool = False) -> None:
        # allow_weak_limits changes nothing here: the engine enforces the limits itself or refuses to start.
        if shutil.which(self.engine) is None:
            raise SandboxError(f"{self.name} backend: {self.engine!r} not found")
        self.uid_base = uid_base
        self.image = image
        if image:
            self._check_image(image)
        if image and gpu and not self.host_has_gpu():
            # A GPU image on a host without one would fail every run; say so once, before grading starts.
            # (Root filesystem runs, the tests' stand-in for images, ask for the device and fail at run time.)
            raise SandboxError(f"{self.name} backend: the GPU runtime {image} needs a GPU and this host has none "
                               f"({self.gpu_requirement}); grade those notebooks on the GPU host, or drop the "
                               f"runtime's backend to grade them in fast mode on the CPU")
        self.rootfs = None if image else (rootfs or DEFAULT_ROOTFS)
        if self.rootfs is not None:
            _make_skeleton(self.rootfs)
        self._runtime_id = runtime_id or (image if image else host.environment_id())
        self.cgroups = cgroups.hierarchy()
        self.cgroups.sweep_stale()

    def runtime_id(self) -> str:
        return self._runtime_id

    def run(self, spec: RunSpec) -> RunResult:
        uid = self.uid_base + spec.slot
        container = f"notebook-grader-{os.getpid()}-{next(_counter)}"
        group = self._group(spec)
        if self.rootfs is not None:
            _writable_mount_point(self.rootfs, spec.scratch)
        with tempfile.TemporaryDirectory(prefix="grader-etc-") as etc:
            identity = host.identity_files(Path(etc), uid)  # the run's uid by name, for git, in images too
            argv = self.command(spec, container, uid, identity, cgroup_parent=group.relative if group else "")
            try:
                # In a folder of its own: podman's conmon drops an `oom` marker into its working directory.
                outcome = supervise(argv, wall_seconds=spec.limits.wall_seconds, output_bytes=spec.limits.output_bytes,
                                    kill=lambda _: self._remove(container), cwd=etc)
                oom = self._oom_killed(container) or bool(group and group.oom_killed())
            finally:
                self._remove(container)
                peak = group.peak_mb() if group else None
                limit_reached = group.limit_reached() if group else False
                if group:
                    group.remove()
        reason = outcome.reason
        if outcome.exit_code == 137 and limit_reached:
            oom = True  # SIGKILL (engines report 128 + 9) with memory use at the ceiling: the OOM killer
        if oom and reason in (ExitReason.OK, ExitReason.ERROR, ExitReason.KILLED):
            reason = ExitReason.MEMORY
        return RunResult(reason=reason, exit_code=outcome.exit_code, stdout=outcome.stdout,
                         stderr_tail=outcome.stderr_tail, wall_seconds=outcome.wall_seconds,
                         memory_peak_mb=peak, memory_limit_reached=limit_reached,
                         details={"uid": str(uid), "container": container, **limits_record(
                             spec.limits, f"{self.engine}+{group.version}" if group else self.engine)})

    def _group(self, spec: RunSpec) -> cgroups.RunGroup | None:
        """Our own parent group, where the host lets us make one: the engine enforces the same limits in its group
        below it; ours tells afterwards how the run ended (the engine's group is gone with the container)."""
        if not self.cgroups.usable:
            return None
        limits = cgroups.GroupLimits(spec.limits.memory_mb, spec.limits.pids, spec.limits.cpus)
        try:
            return self.cgroups.create(limits, for_container=True)
        except OSError as exc:
            raise SandboxError(f"{self.name} backend: cannot create the run's cgroup ({exc})") from exc

    def command(self, spec: RunSpec, container: str, uid: int, identity: list[Mount] = (),
                cgroup_parent: str = "") -> list[str]:
        """`<engine> run …` for spec; the same shape for podman and docker."""
        limits = spec.limits
        megabytes = f"{limits.memory_mb}m"
        scratch = f"rw,size={limits.scratch_mb}m,mode=1777"
        argv = [
            self.engine, "run", "--name", container, *self.engine_flags(),
            "--network", "none", "--read-only", "--user", f"{uid}:{uid}", "--hostname", "sandbox",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", megabytes, "--memory-swap", megabytes, "--pids-limit", str(limits.pids),
            "--cpus", f"{limits.cpus:g}",
            "--ulimit", "nofile=1024:1024", "--ulimit", f"nproc={limits.pids}:{limits.pids}",
            "--ulimit", f"fsize={limits.file_size_mb * 1024 * 1024}:{limits.file_size_mb * 1024 * 1024}",
            "--ulimit", f"cpu={limits.cpu_seconds}:{limits.cpu_seconds}", "--ulimit", "core=0:0",
            "--shm-size", f"{limits.scratch_mb}m",
            "--tmpfs", f"/tmp:{scratch}", "--tmpfs", f"{spec.scratch}:{scratch}", "--workdir", spec.scratch,
        ]
        if cgroup_parent:
            argv += ["--cgroup-parent", cgroup_parent]
        if spec.gpu:
            argv += self.gpu_flags()
        if self.rootfs is not None:
            for directory in [*host.system_dirs(), *host.python_dirs()]:
                argv += ["-v", f"{directory}:{directory}:ro"]
            for masked in host.masked_python_files():  # an editable install's finder: no path to the repository
                argv += ["-v", f"/dev/null:{masked}:ro"]
        for mount in [*identity, *spec.mounts]:
            argv += ["-v", f"{mount.source}:{mount.target}:{'rw' if mount.writable else 'ro'}"]
        environment = {"PATH": host.path_variable(), "HOME": "/tmp"} if self.rootfs else {"HOME": "/tmp"}
        for key, value in {**environment, **spec.environment}.items():
            argv += ["--env", f"{key}={value}"]
        command = list(spec.argv)
        if command and command[0] == "python" and self.rootfs is not None:
            command[0] = host.interpreter()
        root = ["--rootfs", str(self.rootfs)] if self.rootfs is not None else [self.image]
        return argv + root + command

    def engine_flags(self) -> list[str]:
        return []

    def gpu_flags(self) -> list[str]:
        return []

    gpu_requirement = "/dev/nvidiactl"  # what the engine needs to hand a GPU in (for the refusal's message)

    def host_has_gpu(self) -> bool:
        return Path("/dev/nvidiactl").exists()

    def _check_image(self, image: str) -> None:
        """The runtime is named by digest, and that exact image must be here: never a tag, never a pull."""
        _, _, digest = image.partition("@")
        if not digest.startswith("sha256:"):
            raise SandboxError(f"{self.name} backend: runtime image {image!r} is not pinned by digest "
                               f"(NAME@sha256:…)")
        found = subprocess.run([self.engine, "image", "inspect", "--format", "{{json .RepoDigests}}", image],
                               capture_output=True, text=True)
        if found.returncode != 0 or image not in found.stdout:
            raise SandboxError(f"{self.name} backend: no image {image} here (no local image has that digest); "
                               f"build it with runtimes/build.sh or load it")

    def _oom_killed(self, container: str) -> bool:
        inspected = subprocess.run([self.engine, "inspect", "--format", "{{.State.OOMKilled}}", container],
                                   capture_output=True, text=True)
        return inspected.stdout.strip().lower() == "true"

    def _remove(self, container: str) -> None:
        subprocess.run([self.engine, "rm", "--force", "--time", "0", container], capture_output=True)


class PodmanSandbox(ContainerSandbox):
    """podman, with runc: crun refuses these limits on this kernel's cgroup v1 hybrid setup."""

    name = "podman"
    engine = "podman"

    def engine_flags(self) -> list[str]:
        return ["--runtime", "runc"]

    def gpu_flags(self) -> list[str]:
        return ["--device", "nvidia.com/gpu=all"]  # CDI, generated by nvidia-ctk on GPU hosts

    gpu_requirement = "/dev/nvidiactl and a CDI specification of nvidia.com/gpu in /etc/cdi or /var/run/cdi"

    def host_has_gpu(self) -> bool:
        specs = [p for folder in ("/etc/cdi", "/var/run/cdi") for p in Path(folder).glob("*")]
        return super().host_has_gpu() and any("nvidia.com" in p.read_text(errors="replace") for p in specs)


class DockerSandbox(ContainerSandbox):
    """docker: images only (no --rootfs); the same command line as podman otherwise."""

    name = "docker"
    engine = "docker"

    def __init__(self, uid_base: int = 61000, image: str = "", rootfs: Path | None = None,
                 runtime_id: str | None = None, allow_weak_limits: bool = False, gpu: bool = False) -> None:
        if not image:
            raise SandboxError("docker backend: the runtime needs an image pinned by digest (grader.toml [runtimes])")
        super().__init__(uid_base=uid_base, image=image, runtime_id=runtime_id, gpu=gpu)

    def gpu_flags(self) -> list[str]:
        return ["--gpus", "all"]


def _make_skeleton(root: Path) -> None:
    """An empty root with mount points only; mode 0755 so the unprivileged uid can walk to its mounts."""
    for name in ("usr", "etc", "proc", "dev", "sys", "run", "root", "home", "var"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name).chmod(0o755)
    _writable_mount_point(root, "/tmp")
    for link in host.MERGED_USR_LINKS:
        path = root / link.lstrip("/")
        if Path(link).is_symlink() and not path.is_symlink():
            path.symlink_to(os.readlink(link))


def _writable_mount_point(root: Path, target: str) -> None:
    """runc gives a tmpfs the mode of its mount point in the root filesystem, so that must be 1777."""
    point = root / target.lstrip("/")
    point.mkdir(parents=True, exist_ok=True)
    for parent in list(point.relative_to(root).parents)[:-1]:
        (root / parent).chmod(0o755)
    point.chmod(0o1777)
