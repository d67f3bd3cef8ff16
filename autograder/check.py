"""Check: judge a submission's executions with the task's pytest rubric, in a separate process, into a verdict.

Two kinds of criteria: the grader's own per notebook (handed in, executed to the end within the limits,
optionally "uploaded with outputs"), and the task's rubric (plain pytest under assignments/TASK/rubric/, run
with the autograder.rubric plugin outside the sandbox, in a rubric worker process that serves one submission
after another: autograder.rubric_pool). The rubric reads only the checked files of the executions. Which
criteria are required (decide) and which are advice (only shown) is grader.toml's `[tasks.X.criteria]`,
applied here to both kinds. Verdict: pass when every required criterion passes; error when no task notebook
was handed in at all (nothing could be graded); else fail.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.config import Config, TaskConfig
from autograder.criteria import INTERNAL_ERROR_MESSAGE, Criterion, State, verdict_of
from autograder.errors import ConfigError, RubricError
from autograder.execute import ExecutionOutcome
from autograder.rubric_pool import RubricPool, RubricTimeout
from autograder.sandbox import ExitReason

MAX_UPLOAD_NOTEBOOK_BYTES = 64 * 1024 * 1024


@dataclass
class Judgement:
    verdict: str  # pass | fail | error
    criteria: list[Criterion] = field(default_factory=list)
    rubric_seconds: float = 0.0

    @property
    def has_fault(self) -> bool:
        """Whether a fault of the grader (not the student's upload) kept a criterion from being judged."""
        return any(c.state is State.ERROR for c in self.criteria)


@dataclass(frozen=True)
class SubmittedNotebook:
    """A task notebook as found (or not) in the submission, with its execution if it ran."""

    notebook_id: str
    upload: Path | None
    outcome: ExecutionOutcome | None


def judge(config: Config, task: TaskConfig, notebooks: list[SubmittedNotebook], problem: str = "",
          public_only: bool = False, rubric: RubricPool | None = None) -> Judgement:
    """All criteria of one submission and its verdict; a fault of the grader is an `error`, never raised.

    `rubric`: the task's rubric workers (rubric_workers), shared by the submissions of a run; without it, the
    rubric starts a process of its own for this submission.

    `public_only` (the student's self-check, autograder.selfcheck): only the rubric's public criteria run
    (autograder.rubric.is_hidden), and the markings of hidden ones are not expected to be reported.

    When nothing gradable was handed in, the verdict is `error` too (no grade, the student must upload again),
    but the criteria say why as the student's failure: the import's `problem` text, if it has one.
    """
    if all(item.upload is None and item.outcome is None for item in notebooks):  # a repository alone is an upload
        if problem:
            return Judgement("error", [Criterion(id="upload.usable", title="Abgabe lesbar", state=State.FAIL,
                                                 message=problem)])
        return Judgement("error", marked(task, [c for item in notebooks for c in _builtin_criteria(task, item)]))
    criteria: list[Criterion] = []
    for item in notebooks:
        criteria += _builtin_criteria(task, item)
    started = time.monotonic()
    try:
        criteria += run_rubric(config, task, notebooks, public_only=public_only, rubric=rubric)
    except RubricError as exc:
        criteria.append(grader_fault("rubric", "Rubrik ausgeführt", str(exc)))
    else:
        if public_only:
            return Judgement(verdict_of(marked(task, criteria)), marked(task, criteria),
                             rubric_seconds=time.monotonic() - started)
        try:
            _check_marked_exist(task, criteria)
        except ConfigError as exc:
            criteria.append(grader_fault("criteria", "Kriterien zugeordnet", str(exc)))
    criteria = marked(task, criteria)
    return Judgement(verdict_of(criteria), criteria, rubric_seconds=time.monotonic() - started)


def marked(task: TaskConfig, criteria: list[Criterion]) -> list[Criterion]:
    """The criteria with grader.toml's marking (`[tasks.X.criteria]`) in force: it wins over the rubric's marker,
    so what is advice never decides the verdict, whatever the rubric says. The grader's own faults stay required."""
    result = []
    for criterion in criteria:
        marking = task.marking(criterion.id)
        if marking is not None and marking.required != criterion.required:
            criterion = criterion.model_copy(update={"required": marking.required})
        result.append(criterion)
    return result


def _check_marked_exist(task: TaskConfig, criteria: list[Criterion]) -> None:
    """ConfigError when grader.toml marks a criterion that neither the grader nor the rubric reported: a typo
    there would otherwise leave a check silently required (or silently advice). Known only once the rubric ran."""
    reported = {c.id for c in criteria}
    # A notebook that was not handed in reports no `outputs`/`executed`; those names are still the grader's own.
    names = ("submitted", "outputs", "executed") if task.require_outputs else ("submitted", "executed")
    builtin = {f"{nb.id}.{name}" for nb in task.parts() if nb.file for name in names}
    unknown = sorted(set(task.criteria) - reported - builtin)
    if unknown:
        raise ConfigError(f"tasks.{task.id}.criteria.{unknown[0]}: no such criterion (reported: "
                          f"{', '.join(sorted(reported))})")


def grader_fault(name: str, title: str, detail: str) -> Criterion:
    """A criterion that records a fault of the grader (staff see `detail`); the verdict becomes `error`."""
    return Criterion(id=f"grader.{name}", notebook_id="", title=title, required=True, state=State.ERROR,
                     message=INTERNAL_ERROR_MESSAGE, detail=detail[:4000])


def rubric_dir(config: Config, task: TaskConfig) -> Path:
    return config.task_dir(task.id) / "rubric"


def rubric_hash(config: Config, task: TaskConfig) -> str:
    """Hash of the rubric files and the hidden data they read: a change regrades everything."""
    digest = hashlib.sha256()
    task_dir = config.task_dir(task.id)
    for folder in (task_dir / "rubric", task_dir / "hidden"):
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(task_dir)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def rubric_workers(config: Config, task: TaskConfig, warm: int = 0) -> RubricPool:
    """The task's rubric workers for one grading run (a context manager that stops them at its end): each starts
    once and then serves submission after submission, instead of a process per submission. `warm` of them start
    now (one per grading thread), so that they load while the first notebooks run."""
    folder = rubric_dir(config, task)
    pool = RubricPool(folder)
    return pool.warm(warm) if folder.is_dir() else pool  # no folder: run_rubric says so, per submission


def run_rubric(config: Config, task: TaskConfig, notebooks: list[SubmittedNotebook],
               public_only: bool = False, rubric: RubricPool | None = None) -> list[Criterion]:
    """Run the task's rubric over the executions in a worker of `rubric` (else one of its own, for this
    submission only); RubricError if it cannot run.
    With `public_only`, tests that need hidden material are deselected (`--grader-public-only`)."""
    folder = rubric_dir(config, task)
    if not folder.is_dir():
        raise RubricError(f"task {task.id}: rubric folder {folder} not found")
    if rubric is None:
        with rubric_workers(config, task) as own:
            return run_rubric(config, task, notebooks, public_only, own)
    with tempfile.TemporaryDirectory(prefix="grader-rubric-") as tmp:
        manifest, report = Path(tmp) / "manifest.json", Path(tmp) / "report.json"
        manifest.write_text(json.dumps(_manifest(config, task, notebooks)), encoding="utf-8")
        argv = [
            str(folder), "-p", "autograder.rubric",
            f"--grader-manifest={manifest}", f"--grader-report={report}",
            "--assert=plain", "-q", "--no-header", "-p", "no:cacheprovider", "-p", "no:randomly",
            f"--rootdir={folder}", "-c", "/dev/null", "-W", "ignore::DeprecationWarning",
            *(["--grader-public-only"] if public_only else []),
        ]
        timeout = task.rubric_timeout
        try:
            run = rubric.run(argv, timeout)
        except RubricTimeout as exc:
            raise RubricError(f"task {task.id}: rubric ran longer than {exc.seconds:g} s") from None
        except OSError as exc:
            raise RubricError(f"task {task.id}: rubric worker could not start: {exc}") from None
        # pytest exit codes: 0 all passed, 1 some failed (5: nothing left to run once hidden tests are
        # deselected); anything else, or a worker that died, means the rubric itself is broken.
        if not run.answered or run.exit_code not in ((0, 1, 5) if public_only else (0, 1)) or not report.exists():
            raise RubricError(f"task {task.id}: rubric could not run (pytest exit {run.exit_code}): {run.last_line}")
        try:
            return [Criterion.model_validate(entry) for entry in json.loads(report.read_text(encoding="utf-8"))]
        except (ValueError, TypeError) as exc:
            raise RubricError(f"task {task.id}: rubric report unreadable: {str(exc).splitlines()[0]}") from None


def _manifest(config: Config, task: TaskConfig, notebooks: list[SubmittedNotebook]) -> dict[str, Any]:
    return {
        "task": task.id,
        "task_dir": str(config.task_dir(task.id)),
        "settings": config.rubric_settings(task),
        "notebooks": {
            item.notebook_id: {
                "file": task.notebook(item.notebook_id).file,
                "title": task.notebook(item.notebook_id).title,
                "folder": str(item.outcome.folder) if item.outcome else None,
            }
            for item in notebooks
        },
    }


# --- The grader's own criteria ----------------------------------------------------------------------------


def _builtin_criteria(task: TaskConfig, item: SubmittedNotebook) -> list[Criterion]:
    notebook = task.notebook(item.notebook_id)
    label = notebook.title or notebook.file

    def criterion(name: str, title: str, passed: bool, message: str = "", detail: str = "") -> Criterion:
        return Criterion(id=f"{item.notebook_id}.{name}", notebook_id=item.notebook_id, title=title,
                         state=State.PASS if passed else State.FAIL, message="" if passed else message,
                         detail=detail)

    if not notebook.file:  # the repository alone: the rubric judges whether one was handed in
        return []
    if item.upload is None:
        return [criterion("submitted", f"{label}: Notebook abgegeben", False,
                          f"Das Notebook „{notebook.file}“ wurde in der Abgabe nicht gefunden.")]
    found = [criterion("submitted", f"{label}: Notebook abgegeben", True)]
    if task.require_outputs:
        has_outputs = _has_own_outputs(item.upload)
        found.append(criterion(
            "outputs", f"{label}: Notebook mit Ausgaben hochgeladen", has_outputs,
            "Das Notebook wurde ohne Ausgaben hochgeladen. Bitte führen Sie es vor dem Hochladen vollständig "
            "aus und speichern Sie es mit den Ausgaben („Notebook mit Ausgaben hochladen“).",
        ))
    outcome = item.outcome
    assert outcome is not None
    execution = _read_execution(outcome.folder)
    message = _execution_message(outcome, execution)
    found.append(criterion("executed", f"{label}: läuft vollständig durch", message is None, message or "",
                           f"{outcome.reason.value}/{outcome.runner_status}: {outcome.message}"))
    return found


def _execution_message(outcome: ExecutionOutcome, execution: dict[str, Any]) -> str | None:
    """None if the notebook ran to its end within the limits, else a German explanation."""
    reason, status = outcome.reason, outcome.runner_status
    running = execution.get("running_cell")
    at_cell = f" Zelle {running + 1} lief zu diesem Zeitpunkt noch." if isinstance(running, int) else ""
    if reason is ExitReason.MEMORY:
        return (f"Das Notebook hat das Speicherlimit von {execution.get('memory_mb')} MB überschritten und wurde "
                f"beendet.{at_cell}")
    if reason is ExitReason.TIMEOUT or status == "timeout":
        return (f"Das Notebook wurde nach dem Zeitlimit von {execution.get('notebook_timeout')} s abgebrochen."
                f"{at_cell} Prüfen Sie es auf Endlosschleifen oder sehr lange Berechnungen.")
    limit = execution.get("limit") or {}
    if limit.get("kind") == "too-large":
        return (f"Das Notebook ist mit {limit['found']} MB zu groß und wurde nicht ausgeführt (höchstens "
                f"{limit['maximum']} MB). Entfernen Sie große Ausgaben oder eingebettete Daten.")
    if limit.get("kind") == "too-many-images":
        return f"Das Notebook zeigt zu viele Abbildungen ({limit['found']}, höchstens {limit['maximum']})."
    if limit.get("kind") == "image-too-large":
        return f"Das Notebook zeigt eine zu große Abbildung ({limit['found']} KB, höchstens {limit['maximum']} KB)."
    if reason is ExitReason.OUTPUT_LIMIT:
        return "Das Notebook hat zu viele oder zu große Ausgaben erzeugt und wurde abgebrochen."
    if status == "invalid-notebook":
        return "Die Datei ist kein gültiges Jupyter-Notebook und konnte nicht geöffnet werden."
    if status == "kernel-died":
        return ("Der Python-Kernel ist während der Ausführung abgestürzt (z. B. durch os._exit, einen "
                f"Speicherzugriffsfehler oder zu viel Speicher).{at_cell}")
    if status != "completed" or reason not in (ExitReason.OK,):
        return "Das Notebook konnte nicht vollständig ausgeführt werden."
    return None


def _read_execution(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "execution.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _has_own_outputs(upload: Path) -> bool:
    """Whether the uploaded notebook (as uploaded, not as we ran it) carries outputs of a run."""
    try:
        if upload.stat().st_size > MAX_UPLOAD_NOTEBOOK_BYTES:
            return False
        nb = json.loads(upload.read_text(encoding="utf-8"))
        cells = nb.get("cells", []) if isinstance(nb, dict) else []
    except (OSError, ValueError, RecursionError):
        return False
    code = [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code" and c.get("source")]
    return bool(code) and any(c.get("outputs") or c.get("execution_count") for c in code)
