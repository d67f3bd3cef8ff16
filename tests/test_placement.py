"""GPU routing: a gpu notebook goes to its GPU backend, else (if the task allows) to fast CPU mode, provisionally."""

from __future__ import annotations

import shutil

import pytest

from autograder.errors import ConfigError
from autograder.placement import Placer
from conftest import REPO, make_workspace

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

CONFIG = """
[course]
name = "Kurs"
short_name = "K"

[runtimes.cpu]
kind = "cpu"

[runtimes.gpu]
kind = "gpu"
{gpu_backend}

[tasks.t1]
title = "Aufgabe"
allow_fast_cpu = {allow}

[[tasks.t1.notebooks]]
id = "cluster"
file = "a.ipynb"

[[tasks.t1.notebooks]]
id = "finetune"
file = "b.ipynb"
runtime = "gpu"
"""


def placer(tmp_path, allow: bool = True, gpu_backend: str = "", **options) -> tuple[Placer, object]:
    text = CONFIG.format(allow=str(allow).lower(), gpu_backend=gpu_backend)
    config = make_workspace(tmp_path / "w", text, REPO / "assignments").config()
    return Placer(config, **options), config.task("t1")


def test_gpu_notebook_without_gpu_backend_runs_fast_on_cpu_provisionally(tmp_path):
    placer_, task = placer(tmp_path)
    cpu, gpu = (placer_.place(task, nb) for nb in task.notebooks)
    assert (cpu.sandbox.name, cpu.gpu, cpu.fast_mode, cpu.provisional) == ("bwrap", False, False, False)
    assert (gpu.sandbox.name, gpu.gpu, gpu.fast_mode, gpu.provisional) == ("bwrap", False, True, True)
    assert gpu.sandbox is cpu.sandbox  # one backend instance serves both


def test_gpu_notebook_without_gpu_backend_is_a_config_error_unless_allowed(tmp_path):
    placer_, task = placer(tmp_path, allow=False)
    with pytest.raises(ConfigError, match="needs the GPU runtime 'gpu'.*allow_fast_cpu"):
        placer_.place(task, task.notebooks[1])


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman not installed")
def test_gpu_notebook_goes_to_its_gpu_backend_with_the_device(tmp_path):
    placer_, task = placer(tmp_path, gpu_backend=f'backend = "podman"\nrootfs = "{tmp_path / "rootfs"}"')
    cpu, gpu = (placer_.place(task, nb) for nb in task.notebooks)
    assert (gpu.sandbox.name, gpu.gpu, gpu.fast_mode, gpu.provisional) == ("podman", True, False, False)
    assert cpu.sandbox.name == "bwrap"
    assert "--device" in gpu.sandbox.gpu_flags()


def test_forced_fast_mode_marks_only_gpu_work_provisional(tmp_path):
    placer_, task = placer(tmp_path, fast_mode=True)
    cpu, gpu = (placer_.place(task, nb) for nb in task.notebooks)
    assert (cpu.fast_mode, cpu.provisional) == (True, False)
    assert (gpu.fast_mode, gpu.provisional) == (True, True)


def test_grade_with_a_gpu_notebook_and_no_gpu_backend_says_what_to_configure(tmp_path):
    text = CONFIG.format(allow="false", gpu_backend="")
    workspace = make_workspace(tmp_path / "w", text, REPO / "assignments")
    result = workspace.cli("grade", "t1")
    assert result.exit_code == 3
    assert "set runtimes.gpu.backend or allow_fast_cpu = true" in result.stderr
