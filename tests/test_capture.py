"""Figure capture: every shown figure is described, whatever the plotting style; what comes back is checked."""

from __future__ import annotations

import json

import nbformat
import pytest

from autograder import capture
from autograder.execute import Executor, NotebookRun
from autograder.inside.figures import FIGURE_MIME
from autograder.placement import Placer
from conftest import notebook

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

STYLES = notebook(
    """
    import matplotlib.pyplot as plt
    import numpy as np
    xs = np.array([[0, 0], [1, 1], [2, 2], [3, 3]], dtype=float)
    plt.scatter(xs[:, 0], xs[:, 1], c=[0, 0, 1, -1], cmap="viridis")
    plt.title("Eins"); plt.xlabel("x-Achse"); plt.ylabel("y-Achse")
    """,
    """
    fig, axes = plt.subplots(1, 2)
    axes[0].scatter([1, 2], [3, 4], color="red", label="rot")
    axes[0].legend()
    axes[1].plot([1, 2, 3], [1, 4, 9], "ko", label="Rauschen")
    axes[1].set_title("Zwei")
    fig.suptitle("Subplots")
    plt.show()
    plt.figure(); plt.bar(["a", "b", "c"], [3, 1, 2]); plt.title("Balken")
    plt.figure(); plt.plot([0, 1], [1, 0]); plt.title("Linie")
    """,
    """
    import seaborn as sns, pandas as pd
    frame = pd.DataFrame({"x": [1, 2, 3, 4], "y": [4, 3, 2, 1], "Cluster": ["A", "B", "A", "B"]})
    ax = sns.scatterplot(data=frame, x="x", y="y", hue="Cluster")
    ax.set_title("Seaborn")
    """,
)


@pytest.fixture
def executed_styles(sandboxcheck, tmp_path):
    config = sandboxcheck.config()
    config.path(config.paths.runs).mkdir(parents=True, exist_ok=True)
    source = tmp_path / "check.ipynb"
    source.write_text(STYLES)
    task = config.task("sandboxcheck")
    executor = Executor(config, Placer(config, "bwrap", uid_base=61700))
    outcome = executor.execute(NotebookRun(task=task, notebook=task.notebooks[0], notebook_file=source))
    assert outcome.runner_status == "completed", outcome.message
    return [capture.Figure(**f) for f in json.loads((outcome.folder / "figures.json").read_text())]


def test_every_style_is_captured(executed_styles):
    """plt.scatter, ax.scatter in subplots, plot() markers, bars, several figures per cell, seaborn."""
    figures = {(f.axes[0].title or f.suptitle): f for f in executed_styles}
    assert list(figures) == ["Eins", "Subplots", "Balken", "Linie", "Seaborn"]

    first = figures["Eins"].axes[0]
    assert (first.xlabel, first.ylabel) == ("x-Achse", "y-Achse")
    scatter = first.series[0]
    assert scatter.kind == "scatter" and scatter.points == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert scatter.values == [0, 0, 1, -1]
    assert scatter.colors[0] == scatter.colors[1] != scatter.colors[2] != scatter.colors[3]

    left, right = figures["Subplots"].axes
    assert figures["Subplots"].suptitle == "Subplots" and left.legend == ["rot"]
    assert left.series[0].colors == [(1.0, 0.0, 0.0, 1.0)] * 2
    markers = right.series[0]
    assert markers.is_scatter_like and markers.point_colors() == [(0.0, 0.0, 0.0, 1.0)] * 3

    bars = figures["Balken"].axes[0]
    assert [s.kind for s in bars.series] == ["bars"] and [b[3] for b in bars.series[0].bars] == [3, 1, 2]
    assert bars.xticklabels == ["a", "b", "c"]
    assert figures["Linie"].axes[0].series[0].kind == "line" and not figures["Linie"].axes[0].series[0].is_scatter_like

    seaborn = figures["Seaborn"].axes[0]
    assert seaborn.legend == ["A", "B"] and (seaborn.xlabel, seaborn.ylabel) == ("x", "y")
    dots = [s for s in seaborn.series if s.kind == "scatter"][0]
    assert len(set(dots.colors)) == 2 and dots.colors[0] == dots.colors[2]


def _nb_with_output(data: dict) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("plot()")
    cell.outputs = [nbformat.v4.new_output("display_data", data=data)]
    nb.cells = [cell]
    return nb


def test_malformed_figure_descriptions_become_errors_not_crashes():
    """A faked or broken description is kept as a figure with an error; the grader carries on."""
    nb = _nb_with_output({FIGURE_MIME: {"axes": [{"series": [{"kind": "rocket", "points": "many"}]}]}})
    (figure,) = capture.extract_figures(nb)
    assert figure.error.startswith("invalid figure description")
    nb = _nb_with_output({FIGURE_MIME: ["not", "an", "object"]})
    assert capture.extract_figures(nb)[0].error == "figure description is not an object"


@pytest.mark.parametrize("raw, message", [
    (b"", "the sandbox sent no report"),
    (b"{not json", "the sandbox's report is not JSON"),
    (b'{"status": "all tests passed"}', "the sandbox's report has no known status"),
    (b'{"status": "completed", "x": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper than 64 levels"),
    (b"[" * 100_000 + b"]" * 100_000, "the sandbox's report is not JSON"),
])
def test_reports_are_checked(raw, message):
    """Empty, non-JSON, unknown-status and absurdly nested reports are rejected with a reason."""
    with pytest.raises(capture.CaptureError, match=message):
        capture.parse_report(raw)


def test_invalid_notebooks_are_rejected():
    """An executed notebook that is not valid nbformat 4 is refused."""
    with pytest.raises(capture.CaptureError, match="not valid"):
        capture.read_notebook({"nbformat": 4, "nbformat_minor": 5, "cells": "nope", "metadata": {}})


# --- the grader's own cells are known by what it inserted, never by a tag -------------------------------

RESERVED_TAGS = ["parameters", "injected-parameters", "papermill-error-cell-tag", "grader-probe", "raises-exception",
                 "skip-execution"]

TAGCHECK_CONFIG = """
[course]
name = "Reservierte Metadaten"
short_name = "TAGS"

[sandbox]
workers = 1

[tasks.tagcheck]
title = "Reservierte Metadaten"
cell_timeout = 20
notebook_timeout = 60
memory_mb = 768

[[tasks.tagcheck.notebooks]]
id = "main"
file = "check.ipynb"
title = "Prüfnotebook"
probe = "probe.py"
parameters = { WERT = "injiziert" }
"""

# The probe reports one value; the released notebook's parameters cell is the one with id "released-parameters".
TAGCHECK_PROBE = 'from autograder.inside.probe import report\nreport("echt", 42)\n'

# Started by the notebook, outliving its last cell: keeps writing a clean, passing notebook over every notebook
# file it can reach (the runner's old output file included) until the sandbox ends.
REWRITER = """
import glob, json, time
fake = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
    {"cell_type": "code", "id": "untergeschoben", "metadata": {}, "execution_count": 1, "source": "print('fertig')",
     "outputs": [{"output_type": "stream", "name": "stdout", "text": "untergeschoben fertig"}]}]})
end = time.time() + 120
while time.time() < end:
    for path in ["/tmp/grader-output.ipynb", "/tmp/grader-input.ipynb", *glob.glob("/tmp/**/*.ipynb", recursive=True),
                 *glob.glob("*.ipynb")]:
        try:
            open(path, "w").write(fake)
        except OSError:
            pass
    time.sleep(0.001)
"""
REWRITER_CELL = f"""import subprocess, sys
open("/tmp/rewriter.py", "w").write({REWRITER!r})
subprocess.Popen([sys.executable, "/tmp/rewriter.py"], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"""


# Shows that the rewriter is at work when the last cell ends.
LAST_CELL = """import os, time
for _ in range(100):
    if os.path.exists("/tmp/grader-output.ipynb"):
        print("Umschreiber läuft")
        break
    time.sleep(0.05)
print("fertig")"""


def _tagcheck_upload() -> str:
    """A submission whose failing cells carry each reserved tag, with a fake probe report, a decoy parameters
    tag, the released parameters cell untagged, and a process that rewrites files after the last cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["papermill"] = {"parameters": {"WERT": "vom Notebook"}}
    rewriter = nbformat.v4.new_code_cell(REWRITER_CELL)
    tagged = []
    for tag in RESERVED_TAGS:
        cell = nbformat.v4.new_code_cell(
            f"from IPython.display import display\n"
            f"display({{{capture.PROBE_MIME!r}: {{'name': 'echt', 'value': 'gefälscht'}}}}, raw=True)\n"
            f"raise ValueError({tag!r})"
        )
        cell.metadata["tags"] = [tag]
        cell.metadata["papermill"] = {"status": "completed"}
        tagged.append(cell)
    released = nbformat.v4.new_code_cell('WERT = "Standard"')
    released["id"] = "released-parameters"
    nb.cells = [rewriter, *tagged, released, nbformat.v4.new_code_cell('print("WERT", WERT, DATA_DIR)'),
                nbformat.v4.new_code_cell(LAST_CELL)]
    return nbformat.writes(nb)


@pytest.fixture(scope="module")
def tagcheck_result(tmp_path_factory):
    """The tag-check upload executed for real (bwrap) and loaded as the rubric sees it."""
    from autograder.rubric import NotebookResult
    from conftest import make_workspace

    tmp_path = tmp_path_factory.mktemp("tagcheck")
    task = tmp_path / "assignments" / "tagcheck"
    (task / "source").mkdir(parents=True)
    (task / "probe.py").write_text(TAGCHECK_PROBE)
    (task / "rubric").mkdir()
    released = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell('WERT = "Standard"')
    parameters["id"] = "released-parameters"
    parameters.metadata["tags"] = ["parameters"]
    released.cells = [nbformat.v4.new_code_cell("print('Aufgabe')"), parameters]
    (task / "source" / "check.ipynb").write_text(nbformat.writes(released))
    workspace = make_workspace(tmp_path / "course", TAGCHECK_CONFIG, tmp_path / "assignments")
    config = workspace.config()
    config.path(config.paths.runs).mkdir(parents=True, exist_ok=True)
    upload = tmp_path / "check.ipynb"
    upload.write_text(_tagcheck_upload())
    task_config = config.task("tagcheck")
    executor = Executor(config, Placer(config, "bwrap", uid_base=61720))
    outcome = executor.execute(NotebookRun(task=task_config, notebook=task_config.notebooks[0], notebook_file=upload))
    assert outcome.runner_status == "completed", outcome.message
    return NotebookResult.load("main", {"folder": str(outcome.folder), "file": "check.ipynb"})


def _printed(result) -> str:
    return "".join(o.get("text", "") for c in result.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def test_a_reserved_tag_hides_no_failing_cell(tagcheck_result):
    """A failing cell tagged with any reserved tag still fails, and its code is in what the rubric reads."""
    assert [(e.ename, e.evalue) for e in tagcheck_result.errors()] == [("ValueError", tag) for tag in RESERVED_TAGS]
    assert [e.index for e in tagcheck_result.errors()] == [1, 2, 3, 4, 5, 6]  # the upload's own numbering
    assert len(tagcheck_result.cells) == 10
    for tag in RESERVED_TAGS:
        assert f"raise ValueError({tag!r})" in tagcheck_result.code()
    assert TAGCHECK_PROBE.strip() not in tagcheck_result.code() and "injiziert" not in tagcheck_result.code()


def test_parameters_go_after_the_released_parameters_cell(tagcheck_result):
    """papermill's parameters follow the cell the grader names (here untagged), not a cell the upload tags."""
    executed = tagcheck_result.executed["cells"]
    inserted = tagcheck_result.execution["grader_cells"]
    assert executed[inserted["parameters"] - 1]["id"] == "released-parameters"
    assert "WERT = \"injiziert\"" in executed[inserted["parameters"]]["source"]
    assert "WERT injiziert /data" in _printed(tagcheck_result)


def test_only_the_probe_cell_reports_probe_values(tagcheck_result):
    """A student cell tagged grader-probe that emits the probe's output type does not become probe output."""
    assert tagcheck_result.probe == {"echt": 42}
    inserted = tagcheck_result.execution["grader_cells"]
    assert inserted["probe"] == len(tagcheck_result.executed["cells"]) - 1


def test_files_rewritten_after_the_last_cell_change_nothing(tagcheck_result):
    """A process that rewrites every notebook file in the sandbox after the run cannot replace the result."""
    executed = tagcheck_result.executed["cells"]
    assert len(executed) == 12 and all(c["id"] != "untergeschoben" for c in executed)
    assert "Umschreiber läuft" in _printed(tagcheck_result) and "untergeschoben" not in _printed(tagcheck_result)


def test_reported_grader_cells_are_checked():
    """A report that names a student cell as the probe, or no cell at all, is refused."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("student()"), nbformat.v4.new_code_cell(TAGCHECK_PROBE)]
    assert capture.grader_cells({"grader_cells": {"parameters": None, "probe": 1}}, nb, TAGCHECK_PROBE) == \
        {"parameters": None, "probe": 1}
    for wrong in ({"parameters": None, "probe": 0}, {"parameters": 7, "probe": 1}, {"probe": True}, None):
        with pytest.raises(capture.CaptureError):
            capture.grader_cells({"grader_cells": wrong}, nb, TAGCHECK_PROBE)
    with pytest.raises(capture.CaptureError):
        capture.grader_cells({"grader_cells": {"parameters": None, "probe": None}}, nb, TAGCHECK_PROBE)


def test_every_solution_gets_its_parameters_after_the_released_cell():
    """For every solution notebook of the course, the runner picks the released parameters cell (by id, or by
    its source where the cell ids were regenerated), the cell the solution's author tagged."""
    from autograder.execute import released_parameters_cell
    from autograder.inside.runner import _parameters_cell_index, _strip_reserved
    from conftest import REPO

    checked = 0
    for solution in sorted(REPO.glob("assignments/*/solutions/*/*.ipynb")):
        wanted = released_parameters_cell(solution.parents[2] / "source" / solution.name)
        nb = nbformat.read(str(solution), as_version=4)
        tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        _strip_reserved(nb)
        assert wanted and _parameters_cell_index(nb, wanted) == tagged[0], solution
        checked += 1
    assert checked >= 30
