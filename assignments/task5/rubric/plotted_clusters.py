"""Read clusterings back out of captured scatter plots (helpers for test_clustering.py).

A plot is matched to a data set by its points, not by its title: every plotted point is looked up among the
data set's points, either as plotted (raw coordinates) or after standardising both (StandardScaler-style
plots). The clustering is read from the colours: points of one colour form one group, whatever library or
style drew them. The algorithm shown is read from the plot's texts (title, suptitle, legend), else from the
code of the cell that showed it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

MATCH_TOLERANCE = 1e-3  # in standardised units; raw data are written with 6 decimals
ALGORITHMS = {
    "kmeans": re.compile(r"k[\s_-]*means", re.I),
    "dbscan": re.compile(r"db[\s_-]*scan", re.I),
}


@dataclass
class DataSet:
    name: str
    points: np.ndarray
    labels: np.ndarray | None = None  # the true groups (hidden/): only the official grading loads them

    @classmethod
    def load(cls, name: str, data_dir: Path, hidden_dir: Path | None = None) -> "DataSet":
        points = np.loadtxt(data_dir / f"{name}.csv", delimiter=",", skiprows=1)
        if hidden_dir is None:
            return cls(name, points)
        labels = np.loadtxt(hidden_dir / f"{name}_labels.csv", skiprows=1).astype(int)
        return cls(name, points, labels)


@dataclass
class PlottedClustering:
    """One axes that shows one data set: which points, in which colour groups, by which algorithm."""

    figure_index: int
    axes_index: int
    dataset: str
    algorithm: str | None
    indices: np.ndarray  # index into the data set of each plotted point
    groups: np.ndarray  # colour group of each plotted point
    colours: list[tuple[float, ...]]  # colour of each group
    coverage: float  # share of the data set's points that were plotted
    title: str
    xlabel: str
    ylabel: str

    @property
    def group_count(self) -> int:
        return len(set(self.groups.tolist()))


def find_clusterings(figures, datasets: list[DataSet]) -> list[PlottedClustering]:
    """Every axes of every figure whose scatter points are (almost all) points of one of the data sets."""
    found = []
    for f_index, figure in enumerate(figures):
        for a_index, axes in enumerate(figure.axes):
            points, colours = _scatter_points(axes)
            if len(points) < 10:
                continue
            for dataset in datasets:
                indices = _match(points, dataset.points)
                matched = indices >= 0
                if matched.mean() < 0.95:
                    continue
                groups, palette = _colour_groups([colours[i] for i in np.flatnonzero(matched)])
                found.append(PlottedClustering(
                    figure_index=f_index, axes_index=a_index, dataset=dataset.name,
                    algorithm=_algorithm(figure, axes),
                    indices=indices[matched], groups=groups, colours=palette,
                    coverage=len(set(indices[matched].tolist())) / len(dataset.points),
                    title=axes.title or figure.suptitle, xlabel=axes.xlabel, ylabel=axes.ylabel,
                ))
                break
    return found


def _scatter_points(axes) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    points, colours = axes.scatter_points()
    return np.array(points, dtype=float).reshape(-1, 2), colours


def _match(points: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Index of each plotted point in `data` (-1 if none), trying raw and standardised coordinates."""
    best = np.full(len(points), -1)
    for plotted, reference in ((points, data), (_standardise(points), _standardise(data))):
        scale = np.maximum(reference.std(axis=0), 1e-12)
        distance, index = cKDTree(reference / scale).query(plotted / scale, k=1)
        candidate = np.where(distance <= MATCH_TOLERANCE * 10, index, -1)
        if (candidate >= 0).sum() > (best >= 0).sum():
            best = candidate
    return best


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean(axis=0)) / np.maximum(values.std(axis=0), 1e-12)


def _colour_groups(colours: list[tuple[float, ...]]) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    palette: list[tuple[float, ...]] = []
    groups = []
    for colour in colours:
        if colour not in palette:
            palette.append(colour)
        groups.append(palette.index(colour))
    return np.array(groups), palette


def _algorithm(figure, axes) -> str | None:
    for text in (axes.title, " ".join(axes.legend), figure.suptitle, axes.xlabel + " " + axes.ylabel):
        named = [name for name, pattern in ALGORITHMS.items() if pattern.search(text or "")]
        if len(named) == 1:
            return named[0]
    source = figure.cell_source
    called = [name for name, call in (("kmeans", "KMeans("), ("dbscan", "DBSCAN(")) if call in source]
    return called[0] if len(called) == 1 else None
