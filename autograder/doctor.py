"""Doctor: check that this host can grade safely, one requirement at a time, each with its fix.

Required: a cgroup hierarchy (v1 or v2) in which the grader may make groups with the memory, pids and cpu
controllers (the limits are never weakened silently), root (bwrap runs as root to build the sandbox and drop
student code to another uid), bubblewrap with setpriv and prlimit, and libseccomp for the system-call filter.
Optional: podman (container backend), user namespaces (rootless podman), /dev/kvm (the cgroup v2 VM tests),
TeX (task 3 compiles LaTeX). The checks read the host; on cgroup v2 the first one also prepares the grader's
own group as grading would (see autograder/sandbox/cgroups.py).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from autograder.errors import SandboxError
from autograder.sandbox import cgroups, seccomp
from autograder.sandbox.launcher import check as check_launcher

APT = "apt-get install"


@dataclass(frozen=True)
class Check:
    """One requirement: met or not, what was found or how to fix it, and whether grading needs it."""

    name: str
    met: bool
    detail: str
    required: bool = True


def run_checks(cgroup_root: Path | None = None, launcher: list[str] | None = None) -> list[Check]:
    """Every requirement, in the order a reader fixes them; `cgroup_root` replaces /sys/fs/cgroup (tests).

    A grader that runs as an ordinary user with a `launcher` ([sandbox] launcher) needs none of root's
    requirements itself: the launcher answers for cgroups, bwrap and seccomp, and its answer is the check."""
    if launcher and os.geteuid() != 0:
        return [_launcher(launcher), *_optional()]
    return [
        _cgroups(cgroup_root),
        _root(),
        *_tools({"bwrap": "bubblewrap", "setpriv": "util-linux", "prlimit": "util-linux"}, required=True),
        _seccomp(),
        *_optional(),
    ]


def _optional() -> list[Check]:
    return [
        *_tools({"podman": "podman", "runc": "runc"}, required=False),
        _user_namespaces(),
        _kvm(),
        *_tools({"latexmk": "latexmk", "pdflatex": "texlive-latex-base"}, required=False, purpose="task 3"),
    ]


def _launcher(command: list[str]) -> Check:
    """Ask the privileged launcher whether it can build sandboxes; say what runs as root and what does not."""
    try:
        answer = check_launcher(command)
    except SandboxError as exc:
        return Check("sandbox launcher", False, f"{exc} (the sudo rule and the launcher's install: docs/sandbox.md)")
    return Check("sandbox launcher", True, f"{' '.join(command)} answers: as root only the launcher "
                 f"({answer['as_root']}); as {answer['caller']}: everything else")


def _cgroups(root: Path | None) -> Check:
    found = cgroups.hierarchy(root)
    if not found.usable:
        return Check("cgroups", False, "; ".join(found.problems))
    where = f" in {found.base}" if found.base else ""
    version = {"cgroup1": "v1", "cgroup2": "v2"}[found.version]
    return Check("cgroups", True, f"cgroup {version}: {', '.join(found.controllers)} writable{where}")


def _root() -> Check:
    if os.geteuid() == 0:
        return Check("root", True, "running as root (bwrap sets up the sandbox, setpriv drops to the sandbox uid)")
    return Check("root", False, "not root: run the grader as root (bwrap needs it to mount the sandbox's view "
                                "and switch student code to an unprivileged uid), or set [sandbox] launcher to the "
                                "privileged launcher (grader-sandbox through sudo); see docs/sandbox.md")


def _tools(tools: dict[str, str], required: bool, purpose: str = "") -> list[Check]:
    checks = []
    for tool, package in tools.items():
        path = shutil.which(tool)
        label = f"{tool} ({purpose})" if purpose else tool
        checks.append(Check(label, path is not None, path or f"not found: {APT} {package}", required))
    return checks


def _seccomp() -> Check:
    try:
        size = len(seccomp.program())
    except SandboxError as exc:
        return Check("seccomp", False, str(exc))
    return Check("seccomp", True, f"libseccomp filter built ({len(seccomp.denied_calls())} calls denied, "
                                  f"{size // 8} BPF instructions)")


def _user_namespaces() -> Check:
    limit = Path("/proc/sys/user/max_user_namespaces")
    count = int(limit.read_text()) if limit.exists() else 0
    if count > 0:
        return Check("user namespaces", True, f"max_user_namespaces = {count}", required=False)
    return Check("user namespaces", False, "disabled (only rootless podman needs them): "
                 "sysctl user.max_user_namespaces=10000", required=False)


def _kvm() -> Check:
    kvm = Path("/dev/kvm")
    if kvm.exists() and os.access(kvm, os.R_OK | os.W_OK):
        return Check("/dev/kvm (cgroup v2 VM tests)", True, "usable", required=False)
    return Check("/dev/kvm (cgroup v2 VM tests)", False, "not usable: enable virtualisation (KVM) for this host, "
                 "or the VM tests are skipped", required=False)
