"""`grader doctor`: each host requirement met or not, with its fix; exit 1 when a required one is missing."""

from __future__ import annotations

import pytest

from typer.testing import CliRunner

from autograder.cli import app
from autograder.doctor import run_checks
from autograder.sandbox import cgroups

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`


def doctor(*args: str):
    return CliRunner().invoke(app, ["doctor", *args], catch_exceptions=False)


def test_doctor_passes_on_this_host():
    """Here (cgroup v1 on the development machines, v2 in the VM) every required piece is in place."""
    result = doctor()
    assert result.exit_code == 0, result.output
    version = {"cgroup1": "v1", "cgroup2": "v2"}[cgroups.hierarchy().version]
    assert f"ok       cgroups: cgroup {version}: memory, pids, cpu writable" in result.output
    for requirement in ("root", "bwrap", "setpriv", "prlimit", "seccomp"):
        assert f"ok       {requirement}: " in result.output
    assert result.output.rstrip().endswith("Ready to grade.")


def test_doctor_fails_with_one_clear_line_without_cgroups(tmp_path):
    """On a host without cgroups the doctor names the missing piece and its fix, and exits 1."""
    empty = tmp_path / "cgroup"
    empty.mkdir()
    result = doctor("--cgroup-root", str(empty))
    assert result.exit_code == 1
    missing = [line for line in result.output.splitlines() if line.startswith("missing")]
    assert missing == [f"missing  cgroups: no cgroup hierarchy at {empty}: mount one "
                       f"(mount -t cgroup2 none {empty}; systemd does this at boot)"]
    assert result.output.rstrip().endswith("Not ready to grade: cgroups missing.")


def test_v1_without_a_controller_names_it(tmp_path):
    """A v1 host with memory but no pids or cpu controller: each missing controller is named with its mount."""
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "cgroup.procs").write_text("")
    (cgroups_check,) = [c for c in run_checks(tmp_path) if c.name == "cgroups"]
    assert not cgroups_check.met and cgroups_check.required
    assert f"cgroup v1: no pids controller mounted at {tmp_path / 'pids'}" in cgroups_check.detail
    assert f"cgroup v1: no cpu controller mounted at {tmp_path / 'cpu'}" in cgroups_check.detail


def test_optional_pieces_do_not_decide():
    """podman, user namespaces, /dev/kvm and TeX only inform (the VM has no /dev/kvm, yet the doctor passes)."""
    optional = {c.name for c in run_checks() if not c.required}
    assert optional == {"podman", "runc", "user namespaces", "/dev/kvm (cgroup v2 VM tests)", "latexmk (task 3)",
                        "pdflatex (task 3)"}
