"""Execute: run one submitted notebook in a fresh sandbox and keep what came back, checked, on disk.

The sandbox sees the submission's files (read-only, copied into its scratch by the runner), the task's public
data, the offline data (NLTK, 20 Newsgroups cache, model) and, for probed notebooks, the probe and its public
inputs, and of the grader only the runner (autograder/inside, staged alone). Never the rest of the grader, the
hidden labels, the rubric, the database or other submissions. Results are cached by a key
over everything that can change them, so an unchanged notebook is never run twice; an execution folder
appears (by rename) only when complete, and only then is it recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nbformat

from autograder import capture
from autograder.config import Config, NotebookConfig, TaskConfig, fingerprint
from autograder.errors import SandboxError
from autograder.placement import Placement, Placer
from autograder.sandbox import ExitReason, Limits, Mount, RunResult, RunSpec, Sandbox

RUNNER_MODULE = "autograder.inside.runner"
INSIDE_PACKAGE = Path(__file__).parent / "inside"
# The only grader code inside the sandbox: a folder with an empty autograder/__init__.py and a copy of
# autograder/inside, mounted here. `python -I` ignores PYTHONPATH and the working directory (the student's
# files), so the runner is started by a one-line bootstrap that puts this folder first on sys.path.
RUNNER_LIB = "/grader/lib"
RUNNER_ARGV = ["python", "-I", "-c", f"import runpy, sys; sys.path.insert(0, {RUNNER_LIB!r}); "
               f"runpy.run_module({RUNNER_MODULE!r}, run_name='__main__', alter_sys=True)"]

# Where things appear inside the sandbox.
INPUT_DIR = "/input"
DATA_DIR = "/data"
OFFLINE_DIR = "/opt/grader-offline"
JOB_FILE = "/grader/job.json"
PROBE_FILE = "/grader/probe.py"
PROBE_DATA_DIR = "/grader/probe-data"
FACTS_FILE = "/grader/facts.py"
FACTS_JOB_FILE = JOB_FILE  # the facts command's job: the notebook's parameters, the kept tar, how the run ended
KEPT_FILE = "/grader/kept.tar"
FACTS_NAME = "facts.json"
# [sandbox] settings that change where or how fast a notebook runs, never what it does: left out of the
# execution key, so grading with more workers (a smaller default CPU share each), other uids, another
# launcher, or another default backend (the key names the backend that runs it) reuses every execution.
NOT_IN_KEY = {"workers", "uid", "launcher", "backend", "preload"}
KEPT_NAME = "kept.tar"
KEEP_MARGIN_BYTES = 8 * 1024 * 1024  # tar headers (KEEP_MAX_FILES of them) and the manifest


@dataclass(frozen=True)
class NotebookRun:
    """One notebook of one submission to execute: the notebook file and the other files that go with it."""

    task: TaskConfig
    notebook: NotebookConfig
    notebook_file: Path | None  # the submitted notebook on the host; None: only the repository is measured
    companions: tuple[Path, ...] = ()  # other uploaded files copied next to it (data, helper modules, a repo)
    base: Path | None = None  # folder the companions are relative to


@dataclass
class ExecutionOutcome:
    """How one execution ended and where its checked outputs are."""

    key: str
    reason: ExitReason
    runner_status: str
    message: str
    wall_seconds: float
    memory_peak_mb: float | None
    folder: Path
    limits: dict = field(default_factory=dict)  # what the sandbox enforced (execution.json's "sandbox")
    stages: dict = field(default_factory=dict)  # seconds per stage: staging, sandbox, capture, facts (STAGES)


# What an execution's time is spent on: copying the upload and the runner into place, the sandbox (start, kernel,
# notebook, shutdown), checking what came back, and the facts command's sandbox.
STAGES = ("staging", "sandbox", "capture", "facts")


class Executor:
    """Runs NotebookRuns where the Placer puts them, with the task's limits; one instance serves all workers."""

    def __init__(self, config: Config, placer: Placer) -> None:
        self.config = config
        self.placer = placer
        self.runs_root = config.path(config.paths.runs)
        self.offline_dir = config.path(config.paths.offline_data)
        self._hashes = _Hashes()  # every file and folder hashed once per grade run, not once per submission

    def placement(self, run: NotebookRun) -> Placement:
        return self.placer.place(run.task, run.notebook)

    def key(self, run: NotebookRun) -> str:
        """Everything that can change the outcome of running this notebook, hashed: the upload, and what every
        upload of this notebook shares (`_environment`). Not what only changes where or how fast it runs."""
        files = [(str(p.relative_to(run.base)) if run.base else p.name, self._hashes.file(p)) for p in run.companions]
        return fingerprint(
            self._hashes.file(run.notebook_file) if run.notebook_file else "", _relative(run.notebook_file, run.base),
            sorted(files), self._environment(run),
        )

    def _environment(self, run: NotebookRun) -> str:
        """The part of the key every upload of the notebook shares: its settings (not its title), the task's
        limits, data, probe and facts script, the offline data, the runner, the runtime and the sandbox
        settings that change an execution; the hashes behind it are each computed once (`_Hashes`)."""
        task_dir = self.config.task_dir(run.task.id)
        placement = self.placement(run)
        notebook = run.notebook
        return fingerprint(
            notebook.model_dump(mode="json", exclude={"title"}),
            {k: getattr(run.task, k) for k in ("cell_timeout", "notebook_timeout", "memory_mb")},
            self._hashes.tree(task_dir / "data"), self._hashes.tree(task_dir / "probe-data" / notebook.id),
            self._hashes.file(task_dir / notebook.probe) if notebook.probe else "",
            self._hashes.file(task_dir / notebook.facts) if notebook.facts else "",
            self._hashes.tree(self.offline_dir, names_only=True), placement.sandbox.name,
            placement.sandbox.runtime_id(), placement.gpu, self._hashes.tree(INSIDE_PACKAGE), placement.fast_mode,
            self.config.sandbox.model_dump(mode="json", exclude=NOT_IN_KEY), self._parameters_cell(run),
        )

    def folder_for(self, key: str) -> Path:
        return self.runs_root / "executions" / key[:2] / key

    def finished(self, key: str) -> ExecutionOutcome | None:
        """The execution of `key` found whole in the runs folder (a folder arrives there by one rename, its
        execution.json inside), though this course's database has none: another course grading into the same
        runs folder made it, or a run killed before it recorded it. None: there is none."""
        folder = self.folder_for(key)
        try:
            summary = json.loads((folder / "execution.json").read_text(encoding="utf-8"))
            return ExecutionOutcome(
                key=key, reason=ExitReason(summary["exit_reason"]), runner_status=str(summary["runner_status"]),
                message=str(summary["message"]), wall_seconds=float(summary["wall_seconds"]),
                memory_peak_mb=summary["memory_peak_mb"], folder=folder, limits=dict(summary.get("sandbox") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def execute(self, run: NotebookRun, slot: int = 0) -> ExecutionOutcome:
        """Run the notebook in the sandbox; every student failure is in the outcome, nothing is raised."""
        key = self.key(run)
        placement = self.placement(run)
        folder = self.folder_for(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"{key[:12]}-", dir=folder.parent) as tmp:
            staging = Path(tmp)
            os.chmod(staging, 0o755)
            size_mb = run.notebook_file.stat().st_size / (1024 * 1024) if run.notebook_file else 0.0
            if run.notebook_file is None:  # a repository without a notebook: only the facts command runs
                outcome = self._keep_repository_only(run, key, staging / "out")
            elif size_mb > self.config.sandbox.max_notebook_mb:  # not worth a sandbox: say why and stop
                result = RunResult(ExitReason.ERROR, None, b"", "", 0.0)
                refused = {"kind": "too-large", "found": round(size_mb), "maximum": self.config.sandbox.max_notebook_mb}
                outcome = self._keep(run, key, result, staging / "out", refused=refused)
            else:
                clock = _Clock()
                spec = self._spec(run, placement, staging, slot)
                stages = {"staging": clock.lap()}
                result = placement.sandbox.run(spec)
                stages["sandbox"] = clock.lap()
                result, kept = _split_kept(result, bool(run.notebook.keep))
                outcome = self._keep(run, key, result, staging / "out")
                if kept:
                    (staging / KEPT_NAME).write_bytes(kept)  # opened only by the facts command, in its sandbox
                outcome.stages = {**stages, "capture": clock.lap()}
            clock = _Clock()
            self._measure_facts(run, placement, staging, slot, outcome.runner_status)
            if run.notebook.facts:
                outcome.stages["facts"] = clock.lap()
            target = staging / "out"
            if folder.exists():
                shutil.rmtree(folder)
            target.replace(folder)
        outcome.folder = folder
        return outcome

    def _spec(self, run: NotebookRun, placement: Placement, staging: Path, slot: int) -> RunSpec:
        task, notebook = run.task, run.notebook
        task_dir = self.config.task_dir(task.id)
        inputs = _stage_inputs(run, staging / "input")
        mounts = [Mount(inputs, INPUT_DIR)]
        if (task_dir / "data").is_dir():
            mounts.append(Mount(task_dir / "data", DATA_DIR))
        if self.offline_dir.is_dir() and not placement.image_data:
            mounts.append(Mount(self.offline_dir, OFFLINE_DIR))
        if notebook.probe:
            mounts.append(Mount(task_dir / notebook.probe, PROBE_FILE))
            if (task_dir / "probe-data" / notebook.id).is_dir():
                mounts.append(Mount(task_dir / "probe-data" / notebook.id, PROBE_DATA_DIR))
        cell_timeout = notebook.cell_timeout or task.cell_timeout
        notebook_timeout = notebook.notebook_timeout or task.notebook_timeout
        job = {
            "input_dir": INPUT_DIR,
            "notebook": _relative(run.notebook_file, run.base),
            "data_dir": DATA_DIR if (task_dir / "data").is_dir() else None,
            "kernel_dir": "/tmp/grader-kernels",
            "parameters": self._parameters(notebook, placement.fast_mode),
            "cell_timeout": cell_timeout,
            "notebook_timeout": notebook_timeout,
            "probe": PROBE_FILE if notebook.probe else None,
            "parameters_cell": self._parameters_cell(run),
            "matplotlib_cache": f"{OFFLINE_DIR}/matplotlib",
            "keep": list(notebook.keep),
            "keep_bytes": notebook.keep_mb * 1024 * 1024,
        }
        job_file = staging / "job.json"
        job_file.write_text(json.dumps(job))
        job_file.chmod(0o644)
        mounts.append(Mount(job_file, JOB_FILE))
        mounts.append(Mount(_stage_runner(staging / "runner"), RUNNER_LIB))
        sandbox = self.config.sandbox
        limits = Limits(
            memory_mb=notebook.memory_mb or task.memory_mb,
            pids=sandbox.pids,
            cpu_seconds=int(notebook_timeout * 4) + 60,  # CPU time over all cores; the wall clock rules
            file_size_mb=sandbox.file_size_mb,
            scratch_mb=sandbox.scratch_mb,
            wall_seconds=notebook_timeout + sandbox.grace_seconds + 30,
            output_bytes=sandbox.output_mb * 1024 * 1024
            + ((notebook.keep_mb * 1024 * 1024 + KEEP_MARGIN_BYTES) if notebook.keep else 0),
            cpus=sandbox.cpu_share(),
        )
        return RunSpec(
            argv=[*RUNNER_ARGV, JOB_FILE],
            environment=sandbox_environment(limits),
            mounts=mounts,
            limits=limits,
            slot=slot,
            gpu=placement.gpu,
            warm=True,  # the runner behaves the same in a fresh interpreter and in the fork backend's warm one
        )

    def _measure_facts(self, run: NotebookRun, placement: Placement, staging: Path, slot: int,
                       runner_status: str = "") -> None:
        """Run the notebook's facts script (if it has one) and write facts.json next to the other outputs.

        A fresh sandbox with the notebook's limits and environment, over a fresh staged copy of the upload
        (never the scratch the notebook ran in), the task's public data, the offline data and the notebook's
        probe-data, starting `python -I` on the grader's script: no student code is loaded in that process, so
        nothing the notebook did can change what it measures. The folders the notebook was to leave behind
        (`keep`, e.g. a saved model) come as the runner's tar (KEPT_FILE), only ever read in there. FACTS_JOB_FILE
        tells the script the notebook's parameters, the tar (or null) and how the run ended. facts.json is
        {"measured", "message", "facts"}; a command that did not finish or printed no valid JSON is the grader's
        failure (measured false), for the rubric to report as an error.
        """
        if not run.notebook.facts:
            return
        folder = staging / "facts"
        folder.mkdir()
        os.chmod(folder, 0o755)
        notebook_spec = self._spec(run, placement, folder, slot)  # same limits and environment as the notebook
        shown = (INPUT_DIR, DATA_DIR, OFFLINE_DIR, PROBE_DATA_DIR)  # neither the probe nor the runner
        mounts = [m for m in notebook_spec.mounts if m.target in shown]
        script = self.config.task_dir(run.task.id) / run.notebook.facts
        kept = staging / KEPT_NAME
        if kept.is_file():
            kept.chmod(0o644)
            mounts.append(Mount(kept, KEPT_FILE))
        job = {"parameters": self._parameters(run.notebook, placement.fast_mode), "keep": list(run.notebook.keep),
               "kept": KEPT_FILE if kept.is_file() else None, "runner_status": runner_status,
               "probe_data": PROBE_DATA_DIR if any(m.target == PROBE_DATA_DIR for m in mounts) else None}
        job_file = folder / "facts-job.json"
        job_file.write_text(json.dumps(job))
        job_file.chmod(0o644)
        spec = dataclasses.replace(
            notebook_spec, mounts=[*mounts, Mount(script, FACTS_FILE), Mount(job_file, FACTS_JOB_FILE)],
            gpu=placement.gpu, argv=["python", "-I", FACTS_FILE, INPUT_DIR, _relative(run.notebook_file, run.base)],
            warm=False,  # started afresh: nothing of the runner's interpreter
        )
        result = placement.sandbox.run(spec)
        record: dict = {"measured": False, "message": "", "facts": {}}
        if result.reason is not ExitReason.OK:
            tail = result.stderr_tail.strip().splitlines()[-1:] or [""]
            record["message"] = f"facts command ended with {result.reason.value}: {tail[0]}"[:2000]
        else:
            try:
                record.update(measured=True, facts=_parse_facts(result.stdout))
            except capture.CaptureError as exc:
                record["message"] = str(exc)
        (staging / "out" / FACTS_NAME).write_text(json.dumps(record), encoding="utf-8")

    def _keep_repository_only(self, run: NotebookRun, key: str, out: Path) -> ExecutionOutcome:
        """The outputs of a run without a notebook: execution.json saying so; facts.json follows."""
        out.mkdir()
        summary = {"notebook_id": run.notebook.id, "notebook_file": "", "exit_reason": ExitReason.OK.value,
                   "runner_status": "no-notebook", "message": "repository only: no notebook was run"}
        (out / "execution.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        return ExecutionOutcome(key=key, reason=ExitReason.OK, runner_status="no-notebook",
                                message=summary["message"], wall_seconds=0.0, memory_peak_mb=None, folder=out)

    def _parameters_cell(self, run: NotebookRun) -> dict[str, str] | None:
        if not run.notebook.file:
            return None
        source = self.config.task_dir(run.task.id) / "source" / run.notebook.file
        return self._hashes.derived(source, released_parameters_cell)

    def _parameters(self, notebook: NotebookConfig, fast_mode: bool) -> dict:
        values = {"DATA_DIR": DATA_DIR, "FAST_MODE": fast_mode}
        values.update(notebook.parameters)
        if fast_mode:
            values.update(notebook.fast_parameters)
        places = {"data_dir": DATA_DIR, "offline_dir": OFFLINE_DIR}
        return {k: v.format(**places) if isinstance(v, str) else v for k, v in values.items()}

    def _keep(self, run: NotebookRun, key: str, result: RunResult, out: Path,
              refused: dict | None = None) -> ExecutionOutcome:
        """Check the sandbox's output and write the rubric's inputs: executed notebook, figures, probe, summary."""
        out.mkdir()
        status, message, report = "no-report", "", {}
        try:
            if refused:
                status, message = refused["kind"], "refused before running"
            elif result.reason != ExitReason.OUTPUT_LIMIT:
                report = capture.parse_report(result.stdout)
                status, message = report.get("status", "no-report"), str(report.get("message", ""))[:2000]
        except capture.CaptureError as exc:
            status, message = ("no-report" if not result.stdout.strip() else "invalid-report"), str(exc)
        reason = result.reason
        if status == "kernel-died" and result.memory_limit_reached:
            reason = ExitReason.MEMORY  # the kernel died with memory use at the ceiling: the OOM killer
        summary = {
            "notebook_id": run.notebook.id,
            "notebook_file": run.notebook_file.name,
            "exit_reason": reason.value,
            "runner_status": status,
            "message": message,
            "wall_seconds": round(result.wall_seconds, 3),
            "memory_peak_mb": result.memory_peak_mb,
            "running_cell": report.get("running_cell") if isinstance(report.get("running_cell"), int) else None,
            "timed_out_cells": [i for i in report.get("timed_out_cells", []) if isinstance(i, int)][:1000],
            "stderr_tail": result.stderr_tail[-4000:],
            "cell_timeout": run.notebook.cell_timeout or run.task.cell_timeout,
            "notebook_timeout": run.notebook.notebook_timeout or run.task.notebook_timeout,
            "memory_mb": run.notebook.memory_mb or run.task.memory_mb,
            "limit": refused,  # which limit stopped it, if one did: {"kind", "found", "maximum"}
            "sandbox": result.details,  # uid, and the limits in force: what enforced them (cgroup1, cgroup2,
            # rlimit-weak, podman+…) and memory_mb, pids, cpus
        }
        if "notebook" in report:
            try:
                nb = capture.read_notebook(report["notebook"])
                probe = self.config.task_dir(run.task.id) / run.notebook.probe if run.notebook.probe else None
                inserted = capture.grader_cells(report, nb, probe.read_text(encoding="utf-8") if probe else None)
                summary["grader_cells"] = inserted  # the rubric leaves these cells out (NotebookResult.cells)
                capture.check_images(nb, self.config.sandbox.max_images, self.config.sandbox.max_image_kb)
                (out / "executed.ipynb").write_text(json.dumps(nb), encoding="utf-8")
                figures = capture.extract_figures(nb, skip=inserted.values())
                (out / "figures.json").write_text(json.dumps([f.model_dump() for f in figures]), encoding="utf-8")
                probed = capture.extract_probe(nb, inserted["probe"])
                (out / "probe.json").write_text(json.dumps(probed), encoding="utf-8")
            except capture.TooManyImages as exc:
                summary.update(runner_status="too-many-images", message=str(exc), exit_reason="output-limit",
                               limit=exc.limit)
                reason = ExitReason.OUTPUT_LIMIT
            except capture.CaptureError as exc:
                summary.update(runner_status="invalid-report", message=str(exc))
        (out / "execution.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        return ExecutionOutcome(
            key=key, reason=reason, runner_status=summary["runner_status"], message=summary["message"],
            wall_seconds=result.wall_seconds, memory_peak_mb=result.memory_peak_mb, folder=out,
            limits=dict(result.details),
        )


def _stage_inputs(run: NotebookRun, target: Path) -> Path:
    """Copy the notebook and its companions into a world-readable folder for the sandbox's /input."""
    target.mkdir()
    if run.notebook_file is not None:
        notebook = target / _relative(run.notebook_file, run.base)
        notebook.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(run.notebook_file, notebook)
    for companion in run.companions:
        relative = companion.relative_to(run.base) if run.base else Path(companion.name)
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(companion, destination, follow_symlinks=False)
    for root, dirs, files in os.walk(target):
        os.chmod(root, 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)
    return target


def _split_kept(result: RunResult, keeps: bool) -> tuple[RunResult, bytes]:
    """The runner's report line and, after its newline, the tar of the kept folders (b"" when none came)."""
    if not keeps or b"\n" not in result.stdout:
        return result, b""
    report, _, kept = result.stdout.partition(b"\n")
    return dataclasses.replace(result, stdout=report), kept


def _parse_facts(raw: bytes) -> dict:
    """The facts command's JSON document, parsed with capture's limits; raises CaptureError otherwise."""
    if len(raw) > capture.MAX_PROBE_BYTES:
        raise capture.CaptureError(f"the facts command printed more than {capture.MAX_PROBE_BYTES} bytes")
    try:
        facts = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise capture.CaptureError(f"the facts command printed no JSON ({str(exc)[:200]})") from None
    if not isinstance(facts, dict):
        raise capture.CaptureError("the facts command printed no JSON object")
    if capture._depth(facts) > capture.MAX_DEPTH:  # the same depth limit as every report from a sandbox
        raise capture.CaptureError(f"the facts are nested deeper than {capture.MAX_DEPTH} levels")
    return facts


def released_parameters_cell(source: Path) -> dict[str, str] | None:
    """Which cell of an upload papermill's parameters go after: the cell the released notebook (the task's
    source/FILE) tags `parameters`, named by nbgrader grade_id, cell id and source for the runner to find;
    never a cell the upload tags itself. None (no source notebook, or no such cell): papermill injects first."""
    if not source.is_file():
        return None
    for cell in nbformat.read(str(source), as_version=4).cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            return {"grade_id": grade_id, "id": cell.get("id", ""), "source": cell.source}
    return None


def _stage_runner(target: Path) -> Path:
    """A folder that holds the package `autograder.inside` and nothing else of the grader: an empty
    autograder/__init__.py and a copy of the in-sandbox modules, world-readable for the sandbox's uid."""
    package = target / "autograder"
    shutil.copytree(INSIDE_PACKAGE, package / "inside", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (package / "__init__.py").write_text("")
    for root, _, files in os.walk(target):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return target


def _relative(path: Path | None, base: Path | None) -> str:
    """Where a file sits in the submission (a notebook inside an uploaded repository keeps its folder); "" for
    no notebook."""
    if path is None:
        return ""
    return path.relative_to(base).as_posix() if base else path.name


def sandbox_environment(limits: Limits) -> dict[str, str]:
    """The whole environment student code gets: offline switches, writable caches in /tmp, and as many BLAS and
    OpenMP threads as the sandbox has whole cores (its CPU share): more only queue on its quota (task 5's
    clustering ran 25 % longer with two threads on a one-core share)."""
    threads = max(1, int(limits.cpus or 1))
    return {
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "JUPYTER_PATH": "/tmp/grader-kernels",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        "JUPYTER_DATA_DIR": "/tmp/jupyter-data",
        "JUPYTER_CONFIG_DIR": "/tmp/jupyter-config",
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": "/tmp/ipython",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "NLTK_DATA": f"{OFFLINE_DIR}/nltk_data",
        "SCIKIT_LEARN_DATA": f"{OFFLINE_DIR}/scikit_learn_data",
        "HF_HOME": "/tmp/huggingface",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _tree_hash(folder: Path, names_only: bool = False) -> str:
    """Hash of a folder's files (names and contents, or names and sizes for big read-only data)."""
    if not folder.exists():
        return ""
    digest = hashlib.sha256()
    for path in _tree_files(folder):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(str(path.stat().st_size).encode() if names_only else _file_hash(path).encode())
    return digest.hexdigest()


class _Clock:
    """Seconds since the last lap (or since it was made)."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def lap(self) -> float:
        now = time.monotonic()
        seconds, self._last = round(now - self._last, 3), now
        return seconds


class _Hashes:
    """File and folder hashes (and what is read from a file), each computed once while what it was computed
    from keeps its size and modification time: a grade run reads the task's data once, not once per
    submission, and a long-lived Executor (a Dask worker's) still sees an edited file. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple, object] = {}

    def file(self, path: Path) -> str:
        return self.derived(path, _file_hash)

    def tree(self, folder: Path, names_only: bool = False) -> str:
        if not folder.exists():
            return ""
        stamp = tuple((str(p), *_stamp(p)) for p in _tree_files(folder))  # stat only: no file is read
        return self._once(("tree", str(folder), names_only, stamp), lambda: _tree_hash(folder, names_only))

    def derived(self, path: Path, compute: Callable[[Path], Any]) -> Any:
        """compute(path), computed again only when the file changed (or came, or went)."""
        stamp = _stamp(path) if path.exists() else None
        return self._once((compute, str(path), stamp), lambda: compute(path))

    def _once(self, memo: tuple, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if memo in self._known:
                return self._known[memo]
        value = compute()  # outside the lock: two threads may both compute it once, never wrongly
        with self._lock:
            self._known[memo] = value
        return value


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def ensure_sandbox_ready(sandbox: Sandbox) -> None:
    """Fail early with one line if the backend cannot start anything (e.g. bwrap missing)."""
    result = sandbox.run(RunSpec(argv=["python", "-I", "-c", "print('ok')"], environment={},
                                 limits=Limits(wall_seconds=60)))
    if result.reason is not ExitReason.OK or result.stdout.strip() != b"ok":
        tail = result.stderr_tail.strip().splitlines()[-1:] or [result.reason.value]
        raise SandboxError(f"sandbox backend {sandbox.name!r} cannot run Python: {tail[0]}")
