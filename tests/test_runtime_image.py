"""The CPU runtime image, built here from package registries alone (runtimes/build.sh cpu), graded in for real.

The image is built once (`make runtime`) and kept in podman's store under a tag that hashes every input of the
build; these tests run in it when it is there and are skipped, saying why, when it is not. Whether two builds give the same digest is
checked by `make runtime-verify` (a second full build; runtimes/README.md has the result), not here: it takes as
long as the first. Here: the build is cached and prints the
[runtimes.cpu] lines with the digest; a grader.toml naming another digest is refused before anything runs; a
representative subset of the task solutions, graded with the podman backend in that image, gets the verdicts
their expected.toml files name, and every run records the digest; hostile notebooks end in the image as they do
everywhere. If the GPU image was built (`runtimes/build.sh gpu`), torch is imported in it and a gpu notebook
routed to it is refused with one line on this host, which has no GPU.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from autograder.config import load_config
from conftest import REPO, TEST_ASSIGNMENTS, make_workspace, moodle_zip
from test_hostile import CORPUS, EXPECTED, HOSTILE_CONFIG, _failed_as_expected, _says

pytestmark = pytest.mark.sandbox  # starts containers (root): not in `make test-fast`

BUILD = REPO / "runtimes" / "build.sh"
RUN_FLAGS = ["--runtime", "runc", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=4096:4096"]
# Solutions graded in the image: per task the reference (which also completes the solutions that hold only
# the notebook they differ in), an alternative and typical mistakes; between them git, LaTeX with an SVG (Inkscape), pandas/seaborn plots, NLTK, the 20 Newsgroups
# cache and a fine-tuning run of the offline BERT model (fast mode: this host has no GPU).
SUBSET = {
    "task3": ["reference", "alt_latex_extra_svg", "wrong_latex_error", "wrong_one_author"],
    "task4": ["reference", "alt_seaborn", "wrong_fillna_zero", "wrong_no_stemming"],
    "task5": ["reference", "alt_seaborn", "query_wrong_cluster_numbers", "finetune_alt_training_loop"],
}
HOSTILE = ["control", "read_etc_shadow", "read_grader_files", "dns_lookup", "pip_install", "setuid_root",
           "fork_bomb", "memory_bomb", "fill_disk", "kill_runner", "import_grader", "write_outside_scratch"]


def _build(kind: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(BUILD), *options, kind], capture_output=True, text=True, timeout=3600)


def _image_line(output: str) -> str:
    found = re.search(r'^image = "(localhost/notebook-grader-\w+@sha256:[0-9a-f]{64})"$', output, re.MULTILINE)
    assert found, output
    return found.group(1)


NOT_BUILT = 3  # build.sh --present: the image of the current inputs is not in podman's store


@pytest.fixture(scope="module")
def cpu_image() -> str:
    """The CPU image's name@digest, as `make runtime` built it. The build (4 minutes with its downloads cached,
    10 to 30 on a fresh machine, and it needs Debian's mirror to still serve the locked versions) is not part
    of `make test`: without the image these tests are skipped, and say so."""
    if shutil.which("podman") is None or shutil.which("mmdebstrap") is None:
        pytest.skip("runtime image tests: podman and mmdebstrap are needed (make test-system-packages)")
    present = _build("cpu", "--present")
    if present.returncode == NOT_BUILT:
        pytest.skip("runtime image tests skipped: the CPU image of the current lock and recipe is not built; "
                    "`make runtime` builds it, then `make test` runs them")
    assert present.returncode == 0, present.stderr[-3000:]
    return _image_line(present.stdout)


def _podman_config(image: str, text: str) -> str:
    """A grader.toml whose notebooks run in `image` under podman."""
    text = re.sub(r'(?m)^backend = "bwrap"$', 'backend = "podman"', text)
    if '[sandbox]' not in text:
        text += '\n[sandbox]\nbackend = "podman"\n'
    elif 'backend = "podman"' not in text:
        text = text.replace("[sandbox]\n", '[sandbox]\nbackend = "podman"\n', 1)
    if "[runtimes.cpu]" in text:  # grader.toml may name an image already: this one replaces it
        return re.sub(r'\[runtimes\.cpu\]\nkind = "cpu"\n(image = .*\n)?',
                      f'[runtimes.cpu]\nkind = "cpu"\nimage = "{image}"\n', text)
    return text + f'\n[runtimes.cpu]\nkind = "cpu"\nimage = "{image}"\n'


def test_a_second_build_is_a_no_op_and_prints_the_digest(cpu_image):
    """The same inputs give the same tag, so the build does nothing and prints the same lines."""
    started = time.monotonic()
    again = _build("cpu")
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 60
    assert "is up to date" in again.stderr
    assert again.stdout.startswith('[runtimes.cpu]\nkind = "cpu"\n')
    assert _image_line(again.stdout) == cpu_image


def test_the_image_holds_the_locked_environment_and_runs_as_no_root(cpu_image):
    """torch's CPU build of the lock, Python 3.11 from Debian, the offline data and uid 61000 by default."""
    probe = ("import os, sys, torch, sklearn, nltk; from pathlib import Path; "
             "print(sys.version_info[:2], torch.__version__, os.getuid(), "
             "sorted(p.name for p in Path('/opt/grader-offline').iterdir()), "
             "Path('/opt/grader-offline/models/bert/config.json').is_file())")
    ran = subprocess.run(["podman", "run", *RUN_FLAGS, cpu_image, "python", "-c", probe],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["(3,", "11)", "2.13.0+cpu", "61000", "['manifest.json',", "'matplotlib',",
                                  "'models',", "'nltk_data',", "'scikit_learn_data']", "True"]
    tools = subprocess.run(["podman", "run", *RUN_FLAGS, cpu_image, "sh", "-c",
                            "git --version && latexmk -v | head -2 && inkscape --version"],
                           capture_output=True, text=True, timeout=120)
    assert tools.returncode == 0, tools.stderr
    assert "git version" in tools.stdout and "Inkscape" in tools.stdout


def test_a_runtime_named_by_another_digest_is_refused_in_one_line(tmp_path, cpu_image):
    """grader.toml names the image by digest; an image that is not here with that digest is never used."""
    wrong = cpu_image.split("@")[0] + "@sha256:" + "0" * 64
    workspace = make_workspace(tmp_path / "course", _podman_config(wrong, HOSTILE_CONFIG), TEST_ASSIGNMENTS)
    archive = moodle_zip(tmp_path / "one.zip", {"8200001": {"check.ipynb": (CORPUS / "control.ipynb").read_bytes()}},
                         names={"8200001": "control"})
    assert workspace.cli("import", "hostile", archive).exit_code == 0
    result = subprocess.run([str(REPO / ".venv" / "bin" / "grader"), "-c", str(workspace.config_path), "grade",
                             "hostile"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"no image {wrong} here" in result.stderr
    assert "Traceback" not in result.stderr
    tag_only = cpu_image.split("@")[0] + ":latest"
    workspace.config_path.write_text(_podman_config(tag_only, HOSTILE_CONFIG), encoding="utf-8")
    result = workspace.cli("grade", "hostile")
    assert result.exit_code != 0 and "is not pinned by digest" in result.output


def _subset_assignments(root: Path) -> Path:
    """The course's assignments with only SUBSET's solutions (links, nothing copied)."""
    for task, solutions in SUBSET.items():
        source = REPO / "assignments" / task
        target = root / task
        target.mkdir(parents=True)
        for entry in source.iterdir():
            if entry.name != "solutions":
                (target / entry.name).symlink_to(entry)
        (target / "solutions").mkdir()
        for name in solutions:
            (target / "solutions" / name).symlink_to(source / "solutions" / name)
    return root


@pytest.mark.slow(cost=240)
@pytest.mark.parametrize("task", list(SUBSET))
def test_solutions_get_their_expected_verdicts_in_the_image(tmp_path, cpu_image, task):
    """The same verdicts as under bwrap (expected.toml), each execution recorded with the image's digest."""
    config = _podman_config(cpu_image, (REPO / "grader.toml").read_text(encoding="utf-8"))
    workspace = make_workspace(tmp_path / "course", config, _subset_assignments(tmp_path / "assignments"))
    assert workspace.config().runtimes["cpu"].image == cpu_image
    result = workspace.cli("verify", task)
    assert f"Verified {len(SUBSET[task])} solution(s) of {task}: 0 difference(s)." in result.output, result.output
    assert result.exit_code == 0
    with sqlite3.connect(workspace.root / "runs" / "verify" / task / "grader.db") as db:
        executions = db.execute("SELECT backend, runtime FROM execution").fetchall()
    assert executions and set(executions) == {("podman", cpu_image)}, executions


@pytest.mark.slow(cost=120)
def test_hostile_notebooks_end_in_the_image_as_everywhere(tmp_path, cpu_image):
    """A subset of the hostile corpus (tests/hostile/) with podman's expectations, in the real image."""
    workspace = make_workspace(tmp_path / "course", _podman_config(cpu_image, HOSTILE_CONFIG), TEST_ASSIGNMENTS)
    ids = {name: str(8_300_000 + index) for index, name in enumerate(HOSTILE)}
    archive = moodle_zip(tmp_path / "hostile.zip",
                         {ids[n]: {"check.ipynb": (CORPUS / f"{n}.ipynb").read_bytes()} for n in HOSTILE},
                         names={ids[n]: n.replace("_", " ") for n in HOSTILE})
    assert workspace.cli("import", "hostile", archive).exit_code == 0
    result = workspace.cli("grade", "hostile")
    assert result.exit_code == 0, result.output
    status = workspace.status("hostile")
    problems = []
    for name in HOSTILE:
        want, got = {**EXPECTED[name], **EXPECTED[name].get("podman", {})}, status[ids[name]]
        failed = sorted(c["id"] for c in got["criteria"] if not c["passed"])
        messages = " | ".join(c["message"] for c in got["criteria"] if not c["passed"])
        if got["verdict"] != want["verdict"] or not _failed_as_expected(failed, want) or not _says(messages, want):
            problems.append(f"{name}: {got['verdict']} {failed} «{messages[:300]}»")
    assert not problems, "\n".join(problems)


def _gpu_image() -> str | None:
    """The GPU image's name@digest if it was built here (a 10 GB build: never started by the tests)."""
    listed = subprocess.run(["podman", "images", "--format", "{{.Repository}}@{{.Digest}}",
                             "localhost/notebook-grader-gpu"], capture_output=True, text=True)
    found = listed.stdout.split()
    return found[0] if listed.returncode == 0 and found else None


@pytest.mark.skipif(shutil.which("podman") is None or _gpu_image() is None,
                    reason="the GPU image was not built here (runtimes/build.sh gpu)")
def test_gpu_image_imports_torch_and_a_gpu_notebook_is_refused_without_a_gpu(tmp_path):
    """torch's CUDA build loads (and finds no device); the grader routes gpu notebooks to the GPU image and, on
    this host without a GPU, refuses to grade them, in one line, instead of failing every run."""
    image = _gpu_image()
    ran = subprocess.run(["podman", "run", *RUN_FLAGS, image, "python", "-c",
                          "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"],
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    version, cuda, available = ran.stdout.split()
    assert version.split("+")[0] == "2.13.0" and cuda.split(".")[0].isdigit() and available == "False"  # 2.13.0+cu130 13.0

    config = (REPO / "grader.toml").read_text(encoding="utf-8").replace(
        '[runtimes.gpu]\nkind = "gpu"\n', f'[runtimes.gpu]\nkind = "gpu"\nimage = "{image}"\nbackend = "podman"\n')
    workspace = make_workspace(tmp_path / "course", config, REPO / "assignments")
    loaded = load_config(workspace.config_path)
    task = loaded.tasks["task5"]
    finetune = next(nb for nb in task.notebooks if nb.id == "finetune")
    assert loaded.runtime_for(task, finetune) == ("gpu", loaded.runtimes["gpu"])
    result = subprocess.run([str(REPO / ".venv" / "bin" / "grader"), "-c", str(workspace.config_path), "grade",
                             "task5"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "needs a GPU and this host has none" in result.stderr
