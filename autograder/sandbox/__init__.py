"""Sandbox backends, selected by name from grader.toml. Backends are imported only when asked for."""

from __future__ import annotations

from importlib import import_module

from autograder.errors import SandboxError
from autograder.sandbox.base import ExitReason, Limits, Mount, RunResult, RunSpec, Sandbox

# name -> "module:Class"; adding a backend is one class and one line here.
BACKENDS: dict[str, str] = {
    "bwrap": "autograder.sandbox.bwrap:BwrapSandbox",
    "fork": "autograder.sandbox.fork:ForkSandbox",
    "podman": "autograder.sandbox.container:PodmanSandbox",
    "docker": "autograder.sandbox.container:DockerSandbox",
}


def get_sandbox(name: str, **options: object) -> Sandbox:
    """Construct the backend called `name`; an unknown name lists the known ones."""
    try:
        module_name, class_name = BACKENDS[name].split(":")
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise SandboxError(f"unknown sandbox backend {name!r} (known: {known})") from None
    backend = getattr(import_module(module_name), class_name)
    return backend(**options)


__all__ = ["BACKENDS", "ExitReason", "Limits", "Mount", "RunResult", "RunSpec", "Sandbox", "get_sandbox"]
