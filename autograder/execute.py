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
from dataclasses import dataclass, field
from pathlib import Path

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
FACTS_NAME = "facts.json"


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


class Executor:
    """Runs NotebookRuns where the Placer puts them, with the task's limits; one instance serves all workers."""

    def __init__(self, config: Config, placer: Placer) -> None:
        self.config = config
        self.placer = placer
        self.runs_root = config.path(config.paths.runs)
        self.offline_dir = config.path(config.paths.offline_data)
        self._runner_hash = _tree_hash(INSIDE_PACKAGE)

    def placement(self, run: NotebookRun) -> Placement:
        return self.placer.place(run.task, run.notebook)

    def key(self, run: NotebookRun) -> str:
        """Everything that can change the outcome of running this notebook, hashed."""
        task_dir = self.config.task_dir(run.task.id)
        placement = self.placement(run)
        files = [(str(p.relative_to(run.base)) if run.base else p.name, _file_hash(p)) for p in run.companions]
        return fingerprint(
            _file_hash(run.notebook_file) if run.notebook_file else "", _relative(run.notebook_file, run.base),
            sorted(files), run.notebook.model_dump(mode="json"),
            {k: getattr(run.task, k) for k in ("cell_timeout", "notebook_timeout", "memory_mb")},
            _tree_hash(task_dir / "data"), _tree_hash(task_dir / "probe-data" / run.notebook.id),
            _file_hash(task_dir / run.notebook.probe) if run.notebook.probe else "",
            _file_hash(task_dir / run.notebook.facts) if run.notebook.facts else "",
            _tree_hash(self.offline_dir, names_only=True), placement.sandbox.name, placement.sandbox.runtime_id(),
            placement.gpu, self._runner_hash, placement.fast_mode, self.config.sandbox.model_dump(mode="json"),
            self._parameters_cell(run),
        )

    def folder_for(self, key: str) -> Path:
        return self.runs_root / "executions" / key[:2] / key

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
                result = placement.sandbox.run(self._spec(run, placement, staging, slot))
                outcome = self._keep(run, key, result, staging / "out")
            self._measure_facts(run, placement, staging, slot)
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
            output_bytes=sandbox.output_mb * 1024 * 1024,
            cpus=sandbox.cpu_share(),
        )
        return RunSpec(
            argv=[*RUNNER_ARGV, JOB_FILE],
            environment=_sandbox_environment(),
            mounts=mounts,
            limits=limits,
            slot=slot,
            gpu=placement.gpu,
        )

    def _measure_facts(self, run: NotebookRun, placement: Placement, staging: Path, slot: int) -> None:
        """Run the notebook's facts script (if it has one) and write facts.json next to the other outputs.

        A fresh sandbox with the notebook's limits and environment, over a fresh staged copy of the upload
        (never the scratch the notebook ran in), starting `python -I` on the grader's script: no student code
        is loaded in that process, so nothing the notebook did can change what it measures. facts.json is
        {"measured", "message", "facts"}; a command that did not finish or printed no valid JSON is the
        grader's failure (measured false), for the rubric to report as an error.
        """
        if not run.notebook.facts:
            return
        folder = staging / "facts"
        folder.mkdir()
        os.chmod(folder, 0o755)
        notebook_spec = self._spec(run, placement, folder, slot)  # same limits and environment as the notebook
        inputs = [m for m in notebook_spec.mounts if m.target == INPUT_DIR]
        script = self.config.task_dir(run.task.id) / run.notebook.facts
        spec = dataclasses.replace(
            notebook_spec, mounts=[*inputs, Mount(script, FACTS_FILE)], gpu=False,
            argv=["python", "-I", FACTS_FILE, INPUT_DIR, _relative(run.notebook_file, run.base)],
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
        return released_parameters_cell(self.config.task_dir(run.task.id) / "source" / run.notebook.file)

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


def _sandbox_environment() -> dict[str, str]:
    """The whole environment student code gets: offline switches, writable caches in /tmp, one BLAS thread."""
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
        "OMP_NUM_THREADS": "2",
        "MKL_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
        "GIT_CONFIG_NOSYSTEM": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_hash(folder: Path, names_only: bool = False) -> str:
    """Hash of a folder's files (names and contents, or names and sizes for big read-only data)."""
    if not folder.exists():
        return ""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(str(path.stat().st_size).encode() if names_only else _file_hash(path).encode())
    return digest.hexdigest()


def ensure_sandbox_ready(sandbox: Sandbox) -> None:
    """Fail early with one line if the backend cannot start anything (e.g. bwrap missing)."""
    result = sandbox.run(RunSpec(argv=["python", "-I", "-c", "print('ok')"], environment={},
                                 limits=Limits(wall_seconds=60)))
    if result.reason is not ExitReason.OK or result.stdout.strip() != b"ok":
        tail = result.stderr_tail.strip().splitlines()[-1:] or [result.reason.value]
        raise SandboxError(f"sandbox backend {sandbox.name!r} cannot run Python: {tail[0]}")
