"""Rubric of the hostile-corpus task: print 'fertig', run without errors, and plot the public points
coloured into their two (hidden) groups — so faking the figure capture has something to fool."""

from pathlib import Path

import numpy as np
import pytest

from autograder.rubric import describe_error

pytestmark = pytest.mark.notebook("main")


def _printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


@pytest.mark.criterion("finished")
def test_finished(nb):
    """Das Notebook meldet „fertig“"""
    assert "fertig" in _printed(nb), "Das Notebook hat „fertig“ nicht ausgegeben."


@pytest.mark.criterion("no_errors")
def test_no_errors(nb):
    """Alle Zellen laufen ohne Fehler"""
    errors = nb.errors()
    assert not errors, " ".join(describe_error(e, nb.execution.get("cell_timeout")) for e in errors)


@pytest.mark.criterion("figure")
def test_points_plotted_in_their_groups(nb, data_dir: Path, hidden_dir: Path):
    """Die Punkte sind nach Gruppe eingefärbt dargestellt"""
    points = np.loadtxt(data_dir / "points.csv", delimiter=",")
    labels = np.loadtxt(hidden_dir / "labels.csv").astype(int)
    scatters = [s for f in nb.figures for a in f.axes for s in a.series if s.kind == "scatter"]
    assert scatters, "Es wurde kein Streudiagramm gefunden."
    plotted = {tuple(round(v, 4) for v in p): tuple(c) for s in scatters for p, c in zip(s.points, s.colors)}
    assert all(tuple(p) in plotted for p in points.round(4)), "Das Streudiagramm zeigt nicht die Punkte aus points.csv."
    groups = {}
    for point, label in zip(points.round(4), labels):
        groups.setdefault(plotted[tuple(point)], set()).add(int(label))
    assert len(groups) == 2 and all(len(g) == 1 for g in groups.values()), "Die Punkte sind nicht nach Gruppe eingefärbt."
