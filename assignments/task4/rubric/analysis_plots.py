"""Find task 4's plots among the captured figures (helpers for test_analysis.py).

A plot is recognised by what it shows, not by its title or by the library that drew it: a bar chart by the
heights (or, lying, the widths) of its bars, a scatter plot by its points being the penguins' measurements,
and the colours of the points by the species they stand for. matplotlib, pandas' .plot, seaborn, separate
figures or subplots all come out the same in the capture (autograder.capture's Figure/Axes/Series).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import adjusted_rand_score


@dataclass
class Plot:
    """One axes of one figure, with the texts that label it."""

    figure_index: int
    axes_index: int
    title: str
    xlabel: str
    ylabel: str
    labels: list[str] = field(default_factory=list)  # tick labels of both axes (categories of a bar chart)

    def missing_labels(self) -> list[str]:
        """German names of what the plot lacks: title, x-axis label, y-axis label."""
        names = [("Titel", self.title), ("Beschriftung der x-Achse", self.xlabel),
                 ("Beschriftung der y-Achse", self.ylabel)]
        return [name for name, text in names if not (text or "").strip()]


@dataclass
class BarChart(Plot):
    values: list[list[float]] = field(default_factory=list)  # candidate readings: heights, widths


@dataclass
class LineChart(Plot):
    values: list[float] = field(default_factory=list)


@dataclass
class ScatterPlot(Plot):
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    colours: list[tuple[float, ...]] = field(default_factory=list)


def _plot_fields(figure, f_index: int, a_index: int, axes) -> dict:
    return {
        "figure_index": f_index, "axes_index": a_index, "title": axes.title or figure.suptitle,
        "xlabel": axes.xlabel, "ylabel": axes.ylabel,
        "labels": [t.strip() for t in axes.xticklabels + axes.yticklabels if t and t.strip()],
    }


def bar_charts(figures) -> list[BarChart]:
    """Every axes with bars; each bar chart read as heights (upright bars) and as widths (lying bars)."""
    found = []
    for f_index, figure in enumerate(figures):
        for a_index, axes in enumerate(figure.axes):
            bars = [b for s in axes.series if s.kind == "bars" for b in s.bars]
            bars = [b for b in bars if None not in b]
            if not bars:
                continue
            heights = [b[3] for b in bars if b[3] != 0]
            widths = [b[2] for b in bars if b[2] != 0]
            found.append(BarChart(**_plot_fields(figure, f_index, a_index, axes), values=[heights, widths]))
    return found


def line_charts(figures) -> list[LineChart]:
    """Every drawn line (not a marker-only 'scatter' made with plot()) with its y values."""
    found = []
    for f_index, figure in enumerate(figures):
        for a_index, axes in enumerate(figure.axes):
            for series in axes.series:
                if series.kind == "line" and series.linestyle and len(series.points) >= 2:
                    ys = [y for _, y in series.points if y is not None]
                    found.append(LineChart(**_plot_fields(figure, f_index, a_index, axes), values=ys))
    return found


def scatter_plots(figures) -> list[ScatterPlot]:
    """Every axes with scatter-like points, with each point's colour."""
    found = []
    for f_index, figure in enumerate(figures):
        for a_index, axes in enumerate(figure.axes):
            points, colours = axes.scatter_points()
            if points:
                found.append(ScatterPlot(**_plot_fields(figure, f_index, a_index, axes),
                                         points=np.array(points, dtype=float).reshape(-1, 2), colours=colours))
    return found


@dataclass
class ScatterMatch:
    plot: ScatterPlot
    matched_share: float  # share of the plotted points that are penguins' measurements
    coverage: float  # plotted measurements / penguins that should be shown
    species_agreement: float  # adjusted Rand index of colours vs species (unambiguous points only)
    colour_count: int


def match_scatter(plot: ScatterPlot, xs: np.ndarray, ys: np.ndarray, species: list[str],
                  expected_count: int) -> ScatterMatch:
    """How well a scatter plot shows (xs, ys) of the penguins, as plotted or with the axes swapped."""
    by_point: dict[tuple[float, float], set[str]] = defaultdict(set)
    for x, y, s in zip(xs, ys, species):
        by_point[(round(float(x), 3), round(float(y), 3))].add(s)
    best = None
    for points in (plot.points, plot.points[:, ::-1]):
        keys = [(round(float(x), 3), round(float(y), 3)) for x, y in points]
        matched = [k in by_point for k in keys]
        share = sum(matched) / len(keys) if keys else 0.0
        if best is None or share > best[0]:
            best = (share, keys, matched)
    share, keys, matched = best
    truth, groups = [], []
    for key, is_match, colour in zip(keys, matched, plot.colours):
        if is_match and len(by_point[key]) == 1:
            truth.append(next(iter(by_point[key])))
            groups.append(colour)
    agreement = adjusted_rand_score(truth, [str(g) for g in groups]) if len(set(truth)) > 1 else 0.0
    return ScatterMatch(plot=plot, matched_share=share, coverage=sum(matched) / max(expected_count, 1),
                        species_agreement=float(agreement), colour_count=len(set(plot.colours)))


def labels_name(labels: list[str], words: list[str]) -> bool:
    """Whether every word is shown as (or within) one of the tick labels."""
    lowered = [label.lower() for label in labels]
    return all(any(re.search(rf"\b{re.escape(w.lower())}\b", label) for label in lowered) for w in words)
