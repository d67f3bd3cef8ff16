"""Placement: which sandbox backend runs a notebook, in which runtime, and whether in fast CPU mode.

Each notebook names a runtime (grader.toml [runtimes], `cpu` or `gpu`). A runtime may name its own backend
(a GPU host runs `gpu` notebooks in podman or docker with the GPU device); otherwise the default backend
([sandbox].backend, or `grader grade --backend`) runs it. A `gpu` notebook with no GPU-capable backend runs
only if its task allows the fast CPU mode, and its verdict is then provisional: a CPU in fast mode checks
that the work runs, not what a full training reaches. A backend that cannot enforce the limits refuses to be
built unless weak limits are allowed (`grader grade --allow-weak-limits`).
A grader that runs as an ordinary user with `[sandbox] launcher` set hands every run to the privileged
launcher (autograder/sandbox/launcher.py), which runs the same backend as root.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from autograder.config import Config, NotebookConfig, RuntimeConfig, TaskConfig
from autograder.errors import ConfigError
from autograder.sandbox import Sandbox, get_sandbox
from autograder.sandbox.launcher import LauncherSandbox

CONTAINER_BACKENDS = ("podman", "docker")


@dataclass(frozen=True)
class Placement:
    """Where and how one notebook runs."""

    sandbox: Sandbox
    runtime: str  # runtime name in grader.toml
    gpu: bool  # the GPU device is handed in
    fast_mode: bool
    provisional: bool  # GPU work judged from a fast CPU run
    image_data: bool = False  # the runtime image brings its own offline data (real corpus, model)


class Placer:
    """Chooses a Placement per notebook; builds each backend once and shares it between workers."""

    def __init__(self, config: Config, backend: str | None = None, fast_mode: bool | None = None,
                 uid_base: int | None = None, allow_weak_limits: bool = False) -> None:
        self.config = config
        self.allow_weak_limits = allow_weak_limits  # grade where cgroups cannot hold the limits (runs are marked)
        self.uid_base = uid_base or config.sandbox.uid
        self.default_backend = backend or config.sandbox.backend
        self.fast_mode = fast_mode
        self._sandboxes: dict[tuple[str, str], Sandbox] = {}
        self._lock = threading.Lock()

    def place(self, task: TaskConfig, notebook: NotebookConfig) -> Placement:
        name, runtime = self.config.runtime_for(task, notebook)
        fast = task.fast_mode if self.fast_mode is None else self.fast_mode
        if runtime.kind == "gpu" and not _has_gpu_backend(runtime):
            if not task.allow_fast_cpu:
                raise ConfigError(
                    f"{self.config.source}: tasks.{task.id}: notebook {notebook.id!r} needs the GPU runtime "
                    f"{name!r}, which names no GPU backend; set runtimes.{name}.backend or allow_fast_cpu = true"
                )
            # Fast mode runs in the task's CPU runtime (its image under a container backend), where there is one.
            cpu_name, cpu_runtime = task.runtime, self.config.runtimes[task.runtime]
            if cpu_runtime.kind != "cpu":
                cpu_name, cpu_runtime = name, RuntimeConfig(kind="cpu")
            sandbox = self.sandbox(cpu_name, cpu_runtime, self.default_backend)
            return Placement(sandbox, name, gpu=False, fast_mode=True, provisional=True,
                             image_data=bool(cpu_runtime.image) and sandbox.name in CONTAINER_BACKENDS)
        sandbox = self.sandbox(name, runtime, runtime.backend or self.default_backend)
        gpu = runtime.kind == "gpu"
        return Placement(sandbox, name, gpu=gpu, fast_mode=fast, provisional=gpu and fast,
                         image_data=bool(runtime.image) and sandbox.name in CONTAINER_BACKENDS)

    def sandbox(self, name: str, runtime: RuntimeConfig, backend: str) -> Sandbox:
        """The backend for a runtime, built on first use (building one checks that its engine exists)."""
        with self._lock:
            key = (backend, name if backend in CONTAINER_BACKENDS else "")
            if key not in self._sandboxes:
                options: dict = {"uid_base": self.uid_base, "allow_weak_limits": self.allow_weak_limits}
                if backend == "fork" and self.config.sandbox.preload is not None:
                    options["preload"] = self.config.sandbox.preload
                if backend in CONTAINER_BACKENDS:
                    # gpu: a GPU image refuses to start on a host without a GPU (one line, before grading)
                    options.update(image=runtime.image, rootfs=runtime.rootfs, gpu=runtime.kind == "gpu")
                if self.config.sandbox.launcher and os.geteuid() != 0:  # an ordinary user: root's launcher runs it
                    launcher = self.config.sandbox.launcher
                    self._sandboxes[key] = LauncherSandbox(launcher, backend, self.allow_weak_limits)
                else:
                    self._sandboxes[key] = get_sandbox(backend, **options)
            return self._sandboxes[key]

    def sandboxes(self, task: TaskConfig) -> list[Sandbox]:
        """Every backend the task's notebooks would use (to check them before grading starts)."""
        return list({id(p.sandbox): p.sandbox for p in (self.place(task, nb) for nb in task.notebooks)}.values())


def _has_gpu_backend(runtime: RuntimeConfig) -> bool:
    return runtime.backend in CONTAINER_BACKENDS
