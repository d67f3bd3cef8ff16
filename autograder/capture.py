"""Capture: read what the sandbox produced back into checked, size-capped data for the rubric.

The sandbox's report and the executed notebook inside it are untrusted bytes. This module parses them with
limits (size, nesting depth, counts), validates the notebook with nbformat, and pulls out two kinds of data:
the figure descriptions that autograder.inside.figures attached to every shown figure, and the results a
task's probe reported. Both are validated against the schemas below before anything is written for the
rubric. The grader's own cells (papermill's parameters, the probe) are known by the indices the runner
reported and checked here, never by a tag an upload could carry. Nothing here executes or unpickles anything.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Literal, Optional

import nbformat
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autograder.inside.figures import FIGURE_MIME
from autograder.inside.probe import PROBE_MIME

MAX_FIGURES = 200
MAX_DEPTH = 64
MAX_PROBE_BYTES = 8 * 1024 * 1024
RUNNER_STATUSES = ("completed", "timeout", "kernel-died", "invalid-notebook", "runner-error")


class CaptureError(ValueError):
    """Raised when sandbox output is malformed; the caller records it as the run's failure, never crashes."""


class TooManyImages(CaptureError):
    """Raised when an executed notebook shows more or larger images than the grader accepts."""

    def __init__(self, kind: str, found: int, maximum: int) -> None:
        super().__init__(f"{kind}: {found} > {maximum}")
        self.limit = {"kind": kind, "found": found, "maximum": maximum}


IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def check_images(nb: nbformat.NotebookNode, max_images: int, max_image_kb: int) -> None:
    """Raise TooManyImages past the limits (a notebook that draws thousands of figures, or huge ones)."""
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {}) if isinstance(output.get("data"), dict) else {}
            for kind in IMAGE_TYPES:
                if kind not in data:
                    continue
                count += 1
                size_kb = len(str(data[kind])) * 3 // 4 // 1024  # base64 (or SVG text) to bytes, roughly
                if size_kb > max_image_kb:
                    raise TooManyImages("image-too-large", size_kb, max_image_kb)
    if count > max_images:
        raise TooManyImages("too-many-images", count, max_images)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Series(_Strict):
    kind: Literal["scatter", "line", "bars", "image", "pie"]
    label: str = ""
    points: list[tuple[Optional[float], Optional[float]]] = Field(default_factory=list, max_length=20_000)
    colors: list[tuple[float, float, float, float]] = Field(default_factory=list, max_length=20_000)
    values: Optional[list[Optional[float]]] = Field(default=None, max_length=20_000)
    color: Optional[tuple[float, float, float, float]] = None
    marker: str = ""
    linestyle: str = ""
    bars: list[tuple[Optional[float], Optional[float], Optional[float], Optional[float]]] = Field(
        default_factory=list, max_length=20_000
    )
    count: int = 0
    truncated: bool = False

    @property
    def is_scatter_like(self) -> bool:
        """Points drawn as markers: a scatter, or a plot() line with a marker and no line."""
        return self.kind == "scatter" or (self.kind == "line" and bool(self.marker) and not self.linestyle)

    def point_colors(self) -> list[tuple[float, float, float, float]]:
        """One colour per point (a line's points share its colour)."""
        if self.kind == "line":
            return [self.color or (0.0, 0.0, 0.0, 1.0)] * len(self.points)
        return list(self.colors)


class Axes(_Strict):
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    legend: list[str] = Field(default_factory=list)
    xticklabels: list[str] = Field(default_factory=list)
    yticklabels: list[str] = Field(default_factory=list)
    series: list[Series] = Field(default_factory=list, max_length=200)

    def scatter_points(self) -> tuple[list[tuple[float, float]], list[tuple[float, ...]]]:
        """Every point drawn as a marker (scatter, or plot() with markers) with its colour, rounded so that
        colours compare equal; points with a missing coordinate are left out."""
        points, colours = [], []
        for series in self.series:
            if not series.is_scatter_like:
                continue
            for point, colour in zip(series.points, series.point_colors()):
                if point[0] is None or point[1] is None:
                    continue
                points.append(point)
                colours.append(tuple(round(c, 3) for c in colour))
        return points, colours


class Figure(_Strict):
    """One shown figure, with where in the notebook it was shown."""

    cell_index: int
    cell_id: str = ""
    grade_id: str = ""
    cell_source: str = ""
    suptitle: str = ""
    legend: list[str] = Field(default_factory=list)
    axes: list[Axes] = Field(default_factory=list, max_length=64)
    error: str = ""

    def texts(self) -> str:
        """Every title and label of the figure, for matching words like 'DBSCAN'."""
        parts = [self.suptitle, *self.legend]
        for ax in self.axes:
            parts += [ax.title, ax.xlabel, ax.ylabel, *ax.legend]
        return " ".join(p for p in parts if p)


def parse_report(raw: bytes) -> dict[str, Any]:
    """The runner's report as a dict with a known status; raises CaptureError if it is not that."""
    if not raw.strip():
        raise CaptureError("the sandbox sent no report")
    try:
        report = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CaptureError(f"the sandbox's report is not JSON ({str(exc)[:200]})") from None
    if not isinstance(report, dict) or report.get("status") not in RUNNER_STATUSES:
        raise CaptureError("the sandbox's report has no known status")
    if _depth(report) > MAX_DEPTH:
        raise CaptureError(f"the sandbox's report is nested deeper than {MAX_DEPTH} levels")
    return report


def read_notebook(data: Any) -> nbformat.NotebookNode:
    """Validate an executed notebook given as parsed JSON; raises CaptureError if it is not valid nbformat 4."""
    try:
        nb = nbformat.from_dict(data)
        if nb.get("nbformat") != 4:
            raise CaptureError("the executed notebook is not nbformat 4")
        nbformat.validate(nb)
    except CaptureError:
        raise
    except Exception as exc:
        raise CaptureError(f"the executed notebook is not valid ({str(exc).splitlines()[0][:200]})") from None
    return nb


def grader_cells(report: dict[str, Any], nb: nbformat.NotebookNode, probe_source: str | None) -> dict[str, int | None]:
    """The indices of the cells the grader inserted, from the runner's report, checked against the notebook:
    the probe is the last cell and holds exactly the probe's code; papermill's parameters cell is a code cell.
    Raises CaptureError if the report says otherwise."""
    raw = report.get("grader_cells")
    if not isinstance(raw, dict):
        raise CaptureError("the sandbox's report does not say which cells the grader inserted")
    cells: dict[str, int | None] = {}
    for name in ("parameters", "probe"):
        index = raw.get(name)
        if index is not None and (type(index) is not int or not 0 <= index < len(nb.cells)):
            raise CaptureError(f"the sandbox's report names no cell of the notebook as the {name} cell")
        cells[name] = index
    probe = cells["probe"]
    if (probe is None) != (probe_source is None) or (
        probe is not None and (probe != len(nb.cells) - 1 or str(nb.cells[probe].get("source")) != probe_source)
    ):
        raise CaptureError("the sandbox's report does not name the probe as the last cell")
    parameters = cells["parameters"]
    if parameters is not None and (parameters == probe or nb.cells[parameters].cell_type != "code"):
        raise CaptureError("the sandbox's report names no code cell as papermill's parameters cell")
    return cells


def extract_figures(nb: nbformat.NotebookNode, skip: Iterable[int | None] = ()) -> list[Figure]:
    """Every captured figure of the notebook, in display order, except those of the cells in `skip` (the
    grader's own cells)."""
    figures: list[Figure] = []
    skipped = set(skip)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or index in skipped:
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {}) if output.get("output_type") in ("display_data", "execute_result") else {}
            if FIGURE_MIME not in data:
                continue
            if len(figures) >= MAX_FIGURES:
                return figures
            figures.append(_figure(index, cell, data[FIGURE_MIME]))
    return figures


def _figure(index: int, cell: Any, raw: Any) -> Figure:
    where = {
        "cell_index": index,
        "cell_id": str(cell.get("id", "")),
        "grade_id": str(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")),
        "cell_source": str(cell.get("source", ""))[:20_000],
    }
    if not isinstance(raw, dict):
        return Figure(**where, error="figure description is not an object")
    try:
        return Figure(**where, **{k: v for k, v in raw.items() if k in ("suptitle", "legend", "axes", "error")})
    except ValidationError as exc:
        return Figure(**where, error=f"invalid figure description: {str(exc).splitlines()[0][:200]}")


def extract_probe(nb: nbformat.NotebookNode, probe_index: int | None) -> dict[str, Any]:
    """What the task's probe reported (name -> JSON value), read from the probe's cell only (the index the
    runner reported, see grader_cells); later reports of a name replace earlier ones."""
    results: dict[str, Any] = {}
    if probe_index is not None:
        for output in nb.cells[probe_index].get("outputs", []):
            payload = output.get("data", {}).get(PROBE_MIME) if isinstance(output.get("data"), dict) else None
            if isinstance(payload, dict) and isinstance(payload.get("name"), str):
                results[payload["name"]] = payload.get("value")
    if len(json.dumps(results)) > MAX_PROBE_BYTES:
        raise CaptureError(f"the probe reported more than {MAX_PROBE_BYTES} bytes")
    return results


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level
