"""The pytest plugin every rubric runs under, and the fixtures a rubric file uses.

A task's rubric is a folder of plain pytest files (`assignments/TASK/rubric/test_*.py`). Each test function is
one criterion; its assertion message (German) is what the student reads when it fails:

    pytestmark = pytest.mark.notebook("clustering")     # which task notebook this file checks

    @pytest.mark.criterion("dbscan_moons")               # criterion id (default: the name without test_)
    def test_dbscan_moons(nb, settings):
        \"\"\"DBSCAN trennt die Halbmonde.\"\"\"              # title, shown in feedback
        assert ..., "Ihr DBSCAN-Plot der Halbmond-Daten zeigt ..."

A test that needs hidden material (labels, what a probe computed from held-out inputs) is hidden: it asks for
`hidden_dir`, or carries `@pytest.mark.hidden`. The student's self-check (`--grader-public-only`, see
autograder.selfcheck) deselects hidden tests; `grader release` lists them as decided by the official grading only.

pytest runs in a process of its own, outside the sandbox: a rubric worker (autograder.rubric_worker) that serves one
submission after another and imports the rubric's own modules afresh for each; what a library keeps (numpy's
random state, matplotlib's settings) it keeps, so a rubric sets such things where it uses them. The fixtures read
only the checked files autograder.execute wrote. Outcomes go to a JSON report from pytest's hooks; nothing parses
terminal output. Run with `--assert=plain`, so a failing assert's message is exactly the text written.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from autograder.capture import Figure
from autograder.criteria import INTERNAL_ERROR_MESSAGE, Criterion, State

NOT_CHECKED_MESSAGE = "Nicht geprüft, weil das Notebook fehlt oder nicht ausgeführt werden konnte."


@dataclass
class CellError:
    """An error a code cell ended with."""

    index: int
    grade_id: str
    ename: str
    evalue: str

    @property
    def timed_out(self) -> bool:
        return self.ename == "CellTimeoutError"


@dataclass
class NotebookResult:
    """One executed notebook as the rubric sees it (see autograder.execute for the files)."""

    id: str
    file: str
    title: str
    folder: Path | None
    execution: dict[str, Any] = field(default_factory=dict)
    executed: dict[str, Any] | None = None
    figures: list[Figure] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    # facts.json: what the grader's own facts command measured ({"measured", "message", "facts"}), or {}.
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, notebook_id: str, entry: dict[str, Any]) -> "NotebookResult":
        folder = Path(entry["folder"]) if entry.get("folder") else None
        result = cls(id=notebook_id, file=entry.get("file", ""), title=entry.get("title", ""), folder=folder)
        if folder is None:
            return result
        result.execution = _read_json(folder / "execution.json", {})
        result.executed = _read_json(folder / "executed.ipynb", None)
        result.figures = [Figure(**f) for f in _read_json(folder / "figures.json", [])]
        result.probe = _read_json(folder / "probe.json", {})
        result.facts = _read_json(folder / "facts.json", {})
        return result

    @property
    def available(self) -> bool:
        """Whether the notebook was found and executed far enough to be checked."""
        return self.executed is not None

    @property
    def cells(self) -> list[dict[str, Any]]:
        """The student's cells as uploaded: the cells the grader inserted (papermill's parameters, the probe) left
        out by the indices execution.json records, never by a tag (an upload can carry any tag)."""
        if not self.executed:
            return []
        inserted = set((self.execution.get("grader_cells") or {}).values())
        return [c for i, c in enumerate(self.executed["cells"]) if i not in inserted]

    def code(self) -> str:
        """The source of every code cell, joined (for checks like 'DBSCAN is called somewhere')."""
        return "\n".join(_source(c) for c in self.cells if c["cell_type"] == "code")

    def markdown_cells(self, include_given: bool = False) -> list[tuple[int, str]]:
        """(index, text) of the Markdown cells the student wrote; the task's own locked cells only on request."""
        return [
            (i, _source(c)) for i, c in enumerate(self.cells)
            if c["cell_type"] == "markdown" and (include_given or not _is_given(c))
        ]

    def errors(self) -> list[CellError]:
        """Every code cell that ended with an error, in order."""
        found = []
        for index, cell in enumerate(self.cells):
            if cell["cell_type"] != "code":
                continue
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if errors:
                # A timed-out cell shows KeyboardInterrupt (the interrupt) and then the timeout: report the cause.
                error = next((e for e in errors if e.get("ename") == "CellTimeoutError"), errors[0])
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
                found.append(CellError(index, grade_id, error.get("ename", ""), error.get("evalue", "")[:300]))
        return found

    def errors_message(self, shown: int = 3) -> str:
        """The German feedback for failing cells ("" if none): the first few, each by number and cause."""
        errors = self.errors()
        if not errors:
            return ""
        described = " ".join(describe_error(e, self.execution.get("cell_timeout")) for e in errors[:shown])
        return "Beim Ausführen traten Fehler auf: " + described + (" (und weitere)" if len(errors) > shown else "")

    def cell_index(self, grade_id: str) -> int | None:
        """Index (in `cells`) of the cell carrying this nbgrader grade_id."""
        for index, cell in enumerate(self.cells):
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                return index
        return None


def describe_error(error: CellError, cell_timeout: int | None = None) -> str:
    """A German sentence for a failing cell, naming it by its number (and nbgrader id, if any)."""
    where = f"Zelle {error.index + 1}" + (f" ({error.grade_id})" if error.grade_id else "")
    if error.timed_out:
        limit = f" von {cell_timeout} s" if cell_timeout else ""
        return f"{where} hat das Zeitlimit{limit} überschritten."
    return f"{where} bricht mit {error.ename}: {error.evalue} ab."


def _is_given(cell: dict[str, Any]) -> bool:
    """A cell the released notebook provides and locks (task text), as opposed to one the student fills."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("locked")) and not meta.get("solution")


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


# --- pytest plugin ----------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("notebook-grader")
    group.addoption("--grader-manifest", help="JSON describing the executions to check (autograder.check).")
    group.addoption("--grader-report", help="Where to write the criteria report (JSON).")
    group.addoption("--grader-public-only", action="store_true",
                    help="Run only the public criteria (the student's self-check): hidden ones are deselected.")
    group.addoption("--grader-catalog", help="Where to write every criterion with its file and whether it is "
                    "hidden (JSON; use with --collect-only).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "notebook(id): the task notebook a rubric file checks")
    config.addinivalue_line("markers", "criterion(id, required=True): a criterion's id and whether it must pass "
                            "(grader.toml's [tasks.X.criteria] marking wins; see autograder.check.marked)")
    config.addinivalue_line("markers", "hidden: the criterion needs hidden material (labels, held-out inputs a "
                            "probe reads); only the official grading decides it. A test that asks for `hidden_dir` "
                            "is hidden without the marker (see is_hidden)")
    if config.getoption("--grader-report"):
        config.pluginmanager.register(_Reporter(Path(config.getoption("--grader-report"))), "grader-reporter")


def _manifest(config: pytest.Config) -> dict[str, Any]:
    path = config.getoption("--grader-manifest")
    if not path:
        raise pytest.UsageError("rubrics run under notebook-grader: pass --grader-manifest")
    return json.loads(Path(path).read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def manifest(pytestconfig: pytest.Config) -> dict[str, Any]:
    """The run being checked: task, notebooks and their execution folders, settings, data folders."""
    return _manifest(pytestconfig)


@pytest.fixture(scope="session")
def notebooks(manifest: dict[str, Any]) -> dict[str, NotebookResult]:
    """Every task notebook of this submission, by notebook id."""
    return {nid: NotebookResult.load(nid, entry) for nid, entry in manifest["notebooks"].items()}


@pytest.fixture
def nb(request: pytest.FixtureRequest, notebooks: dict[str, NotebookResult]) -> NotebookResult:
    """The notebook named by the test module's `pytest.mark.notebook(...)`."""
    return notebooks[_notebook_of(request.node)]


@pytest.fixture(scope="session")
def settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """The task's [tasks.X.rubric] thresholds from grader.toml."""
    return manifest.get("settings", {})


@pytest.fixture(scope="session")
def data_dir(manifest: dict[str, Any]) -> Path:
    """The task's public data folder (what the sandbox saw as DATA_DIR)."""
    return Path(manifest["task_dir"]) / "data"


@pytest.fixture(scope="session")
def hidden_dir(manifest: dict[str, Any], pytestconfig: pytest.Config) -> Path:
    """The task's hidden folder (labels, held-out answers): only ever read here, outside the sandbox. Asking for
    it makes a test hidden (is_hidden): the self-check deselects such tests and never opens this folder."""
    if pytestconfig.getoption("--grader-public-only"):
        raise pytest.UsageError("hidden_dir requested in a public-only run (a hidden test was not deselected)")
    return Path(manifest["task_dir"]) / "hidden"


def is_hidden(item: pytest.Item) -> bool:
    """Whether a rubric test needs hidden material: it carries `pytest.mark.hidden` (e.g. it reads what a probe
    computed from held-out inputs) or it asks, directly or through its fixtures, for `hidden_dir`."""
    return item.get_closest_marker("hidden") is not None or "hidden_dir" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    catalog = config.getoption("--grader-catalog")
    if catalog:
        entries = [{"criterion": f"{_notebook_of(item)}.{criterion_of(item)[0]}", "hidden": is_hidden(item),
                    "title": _title(item), "file": item.path.name} for item in items]
        Path(catalog).write_text(json.dumps(entries), encoding="utf-8")
    if config.getoption("--grader-public-only"):
        hidden = [item for item in items if is_hidden(item)]
        if hidden:
            config.hook.pytest_deselected(items=hidden)
            items[:] = [item for item in items if not is_hidden(item)]


def _notebook_of(item: pytest.Item) -> str:
    marker = item.get_closest_marker("notebook")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{item.nodeid}: rubric file needs pytestmark = pytest.mark.notebook('<id>')")
    return str(marker.args[0])


def criterion_of(item: pytest.Item) -> tuple[str, bool]:
    """(criterion id, required) of a rubric test."""
    marker = item.get_closest_marker("criterion")
    name = item.name.split("[")[0].removeprefix("test_")
    criterion = str(marker.args[0]) if marker and marker.args else name
    required = bool(marker.kwargs.get("required", True)) if marker else True
    return criterion, required


def pytest_runtest_setup(item: pytest.Item) -> None:
    notebook_id = _notebook_of(item)
    entry = _manifest(item.config)["notebooks"].get(notebook_id)
    if entry is None:
        raise pytest.UsageError(f"{item.nodeid}: notebook {notebook_id!r} is not a notebook of this task")
    folder = Path(entry["folder"]) if entry.get("folder") else None
    # A test that reads only what the grader's facts command measured needs no executed notebook (task 3's
    # repository is judged with or without one); a test that asks for `nb` does.
    facts_only = folder is not None and (folder / "facts.json").exists() and "nb" not in item.fixturenames
    if folder is None or not ((folder / "executed.ipynb").exists() or facts_only):
        pytest.skip("notebook unavailable")


class _Reporter:
    """Collects one Criterion per rubric test and writes them as JSON when the session ends.

    A failed assertion (or pytest.fail) is the student's fail, with its message; any other exception, in the
    test or in a fixture, is the rubric's own fault: the criterion is `error`, the traceback kept for staff.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, Criterion] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and not report.passed):
            criterion = _criterion(item, report, call)
            self.results[criterion.id] = criterion

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        entries = [c.model_dump(mode="json") for c in self.results.values()]
        self.path.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")


def _title(item: pytest.Item) -> str:
    """The first line of a rubric test's docstring (German), or its criterion name."""
    doc = (getattr(item, "obj", None).__doc__ or "").strip() if getattr(item, "obj", None) else ""
    return doc.splitlines()[0] if doc else criterion_of(item)[0]


def _criterion(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo) -> Criterion:
    name, required = criterion_of(item)
    notebook_id = _notebook_of(item)
    doc = (getattr(item, "obj", None).__doc__ or "").strip() if getattr(item, "obj", None) else ""
    state, message, detail = State.PASS, "", ""
    if report.skipped:
        state, message, detail = State.FAIL, NOT_CHECKED_MESSAGE, "skipped: notebook unavailable"
    elif report.failed and call.excinfo is not None:
        detail = "".join(traceback.format_exception(call.excinfo.value))[-4000:]
        student_fail = call.excinfo.errisinstance((AssertionError, pytest.fail.Exception))
        if student_fail and str(call.excinfo.value).strip():
            state, message = State.FAIL, str(call.excinfo.value).strip()
        else:  # the rubric raised, or asserted without a message for the student: not the student's fault
            state, message = State.ERROR, INTERNAL_ERROR_MESSAGE
    elif report.failed:
        state, message, detail = State.ERROR, INTERNAL_ERROR_MESSAGE, str(report.longrepr)[-4000:]
    return Criterion(id=f"{notebook_id}.{name}", notebook_id=notebook_id, title=doc.splitlines()[0] if doc else name,
                     required=required, state=state, message=message, detail=detail)
