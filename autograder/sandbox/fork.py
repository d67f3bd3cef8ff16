"""The fork backend: the bwrap backend's sandbox, forked from an interpreter that has the libraries loaded.

A bwrap run starts a new Python and imports papermill, ipykernel, numpy, pandas, matplotlib and scikit-learn
again for every submission (1.4 to 1.9 s of CPU before its first own line runs). Here, a warm run (RunSpec.warm:
the notebook runner) is forked from a fork server (autograder/sandbox/zygote.py) that imported `preload` once:
its child builds the same sandbox bwrap builds (the same mount plan, namespaces, cgroup, rlimits, uid, no
capabilities, no_new_privs, seccomp filter) and runs the command in the warm interpreter; the runner then forks
the notebook's kernel from itself, so the notebook's own `import pandas` finds pandas loaded.

The fork server runs as root outside any sandbox and loads no student code: a connection is forked at once,
and only the child reads the run's request. There is one server per sandbox environment (the environment is
read at import by some libraries, matplotlib among them), started at the first warm run that needs it and
ended when the grader exits (it reads its standard input until it closes). Runs that are not warm (the facts
command, the readiness check) are the bwrap backend's. Needs cgroups: a run is ended through its cgroup,
which holds the server's child as well (no --allow-weak-limits).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path

from autograder.errors import SandboxError
from autograder.sandbox import host
from autograder.sandbox.base import RunSpec
from autograder.sandbox.bwrap import BwrapSandbox, MountStep, mount_plan, rlimits, sandbox_environment
from autograder.sandbox.cgroups import RunGroup

ZYGOTE = str(Path(__file__).with_name("zygote.py"))
# What a notebook of this course imports, and what runs it. Not matplotlib_inline's backend, which pyplot loads
# at the first figure: it hooks into the kernel's shell when it is loaded, and a kernel forked from a server
# that had loaded it would show no figures.
DEFAULT_PRELOAD = (
    "ipykernel.kernelapp", "ipykernel.debugger", "jupyter_client", "nbformat", "nbclient", "papermill",
    "threadpoolctl",
    "numpy", "pandas", "scipy.spatial", "sklearn.cluster", "sklearn.datasets", "sklearn.preprocessing",
    "sklearn.metrics", "sklearn.feature_extraction.text", "nltk",
    "matplotlib", "matplotlib.pyplot", "matplotlib.backends.backend_agg",
)
START_SECONDS = 120  # a cold import of the libraries on a loaded machine


class ForkSandbox(BwrapSandbox):
    """bwrap's sandbox, with warm runs forked from a fork server; see the module docstring."""

    name = "fork"

    def __init__(self, uid_base: int = 61000, runtime_id: str | None = None, allow_weak_limits: bool = False,
                 preload: tuple[str, ...] | list[str] = DEFAULT_PRELOAD) -> None:
        super().__init__(uid_base, runtime_id, allow_weak_limits)
        if not self.cgroups.usable:
            raise SandboxError("fork backend: needs cgroups to end a run's processes "
                               f"({'; '.join(self.cgroups.problems)}); use the bwrap backend")
        self.preload = [name for name in preload if _installed(name)]
        self._folder = Path(tempfile.mkdtemp(prefix="grader-fork-"))
        self._servers: dict[tuple, _Server] = {}
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _stop, self._servers, self._folder)

    def close(self) -> None:
        """End the fork servers (they also end by themselves when the grader exits)."""
        self._finalizer()

    def _command(self, spec: RunSpec, uid: int, folder: Path, group: RunGroup | None) -> list[str]:
        if not spec.warm or group is None:
            return super()._command(spec, uid, folder, group)
        server = self._server(sandbox_environment(spec))
        identity, filter_file = self._run_files(folder, uid)
        request = {
            "argv": list(spec.argv),
            "environment": sandbox_environment(spec),
            "interpreter": host.interpreter(),
            "mounts": [dataclasses.asdict(_resolved(step)) for step in mount_plan(spec, identity)],
            "procs_files": group.procs_files(),
            "rlimits": rlimits(spec, use_rlimit_memory=False),
            "scratch": spec.scratch,
            "seccomp_file": str(filter_file),
            "uid": uid,
        }
        request_file = folder / "request.json"
        request_file.write_text(json.dumps(request))
        request_file.chmod(0o600)
        return [host.interpreter(), "-I", "-S", ZYGOTE, "--connect", server.socket, str(request_file)]

    def _server(self, environment: dict[str, str]) -> "_Server":
        key = tuple(sorted(environment.items()))
        with self._lock:
            server = self._servers.get(key)
            if server is None or not server.alive():  # a server that died is replaced: the run goes on
                socket = self._folder / f"server-{len(self._servers)}-{id(key)}.sock"
                server = self._servers[key] = _Server(str(socket), environment, self.preload)
            return server


class _Server:
    """One fork server process, started and ready."""

    def __init__(self, socket: str, environment: dict[str, str], preload: list[str]) -> None:
        self.socket = socket
        self.log = Path(socket).with_suffix(".log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [host.interpreter(), "-I", "-S", ZYGOTE, socket,
                 *(f"--mask={path}" for path in host.masked_python_files()), *preload], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, env=environment, cwd="/", start_new_session=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_SECONDS)
        line = self.process.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.stop()
            tail = self.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no answer"]
            raise SandboxError(f"fork backend: the fork server did not start: {tail[0][:300]}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()  # the server's signal to end
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _resolved(step: MountStep) -> MountStep:
    """A bind's source with its links resolved here, as bwrap does: the server's child finds it below the host's
    old root, where an absolute link would point into the new one."""
    if step.kind != "bind":
        return step
    return dataclasses.replace(step, source=os.path.realpath(step.source))


def _stop(servers: dict[tuple, _Server], folder: Path) -> None:
    for server in servers.values():
        server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False
