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
