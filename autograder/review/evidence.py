"""Evidence out of the run folders, for the review page: figure images and the executed notebook as safe HTML.

Everything here comes from the sandbox and is hostile. Files are found by execution id (checked to belong to
the task) and a fixed name or a figure index, never by a path from a request. The notebook is rendered by
nbconvert and then sanitised with nh3: no script, no event handler, no javascript: URL, SVG only as an image.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from pathlib import Path

import nbformat
import nh3
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autograder.inside.figures import FIGURE_MIME
from autograder.models import Execution, Participant, Run, RunExecution, Submission
from autograder.review.query import run_folder

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024
IMAGE_DATA_URL = re.compile(r"^data:image/(png|jpeg|gif|svg\+xml);base64,[A-Za-z0-9+/=\s]*$")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# nbconvert's markup keeps its classes (the page's stylesheet styles them); everything else is ammonia's
# default allow-list. Style attributes and <style> are dropped: the CSP forbids inline styles anyway.
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES["*"] = {"class", "title", "lang"}
_TAGS = set(nh3.ALLOWED_TAGS) - {"style"}


def execution_of_task(engine: Engine, task: str, execution_id: int) -> Execution | None:
    """The execution if a run of a submission of this task used it; None otherwise (another task's files)."""
    with Session(engine) as session:
        return session.exec(
            select(Execution).join(RunExecution, RunExecution.execution_id == Execution.id)
            .join(Run, Run.id == RunExecution.run_id).join(Submission, Submission.id == Run.submission_id)
            .join(Participant, Participant.id == Submission.participant_id)
            .where(Execution.id == execution_id, Participant.task == task)
        ).first()


def figure_png(runs_root: Path, execution: Execution, index: int) -> bytes | None:
    """The PNG shown with the figure `index` of figures.json (same order: outputs carrying a figure
    description, the grader's own cells left out), or None."""
    nb = _executed(run_folder(runs_root, execution))
    summary = _json(run_folder(runs_root, execution) / "execution.json") or {}
    skipped = set((summary.get("grader_cells") or {}).values())
    if nb is None:
        return None
    found = -1
    for cell_index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or cell_index in skipped:
            continue
        for output in cell.get("outputs", []):
            data = output.get("data") if isinstance(output.get("data"), dict) else {}
            if FIGURE_MIME in data:
                found += 1
                if found == index:
                    return _png(data.get("image/png"))
    return None


def notebook_html(runs_root: Path, execution: Execution) -> str:
    """The executed notebook as sanitised HTML (the body only), or '' if there is none."""
    from nbconvert import HTMLExporter

    nb = _executed(run_folder(runs_root, execution))
    if nb is None:
        return ""
    try:
        node = nbformat.from_dict(_svg_as_images(nb))
        body, _ = HTMLExporter(template_name="basic", exclude_input_prompt=False).from_notebook_node(node)
    except Exception as exc:  # a notebook nbconvert cannot render is shown as such, not a crash
        return f"<p>nbconvert could not render this notebook: {nh3.clean(str(exc)[:300])}</p>"
    return sanitise(body)


def sanitise(html: str) -> str:
    """Untrusted HTML made inert: ammonia's allow-list, data: URLs only for images."""
    return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, attribute_filter=_keep_attribute,
                     url_schemes={"http", "https", "mailto", "data"}, strip_comments=True)


def notebook_errors(runs_root: Path, execution: Execution) -> list[dict]:
    """The error outputs of the notebook: cell index, exception and traceback (ANSI colours removed)."""
    nb = _executed(run_folder(runs_root, execution))
    errors = []
    for index, cell in enumerate((nb or {}).get("cells", [])):
        for output in cell.get("outputs", []) if isinstance(cell, dict) else []:
            if output.get("output_type") == "error":
                traceback = "\n".join(str(line) for line in output.get("traceback", []))
                errors.append({"cell": index, "ename": str(output.get("ename", ""))[:200],
                               "evalue": str(output.get("evalue", ""))[:2000],
                               "traceback": ANSI.sub("", traceback)[-20_000:]})
    return errors


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    """data: URLs only in an <img src>, and only base64 images; nothing else may carry one."""
    if value.strip().lower().startswith("data:"):
        return value if tag == "img" and attribute == "src" and IMAGE_DATA_URL.match(value.strip()) else None
    return value


def _svg_as_images(nb: dict) -> dict:
    """A copy of the notebook whose SVG outputs are <img> data URLs: an image cannot run its scripts."""
    nb = copy.deepcopy(nb)
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = output.get("data")
            if isinstance(data, dict) and "image/svg+xml" in data:
                svg = data.pop("image/svg+xml")
                svg = "".join(svg) if isinstance(svg, list) else str(svg)
                encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
                data.setdefault("text/html", f'<img alt="SVG" src="data:image/svg+xml;base64,{encoded}">')
    return nb


def _executed(folder: Path) -> dict | None:
    path = folder / "executed.ipynb"
    if not path.is_file() or path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return None
    nb = _json(path)
    return nb if isinstance(nb, dict) else None


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _png(value) -> bytes | None:
    if isinstance(value, list):
        value = "".join(value)
    if not isinstance(value, str):
        return None
    try:
        data = base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError):
        return None
    return data if data.startswith(b"\x89PNG\r\n\x1a\n") else None


def describe_figure(figure: dict) -> dict:
    """What the rubric read from one figure, for the page: titles and labels, and per series its kind, how
    many points and which colour groups (rounded RGBA with their counts)."""
    from autograder.capture import Figure

    try:
        parsed = Figure.model_validate(figure)
    except ValueError:
        return {"error": "figure description unreadable", "axes": [], "cell_index": figure.get("cell_index")}
    axes = []
    for ax in parsed.axes:
        series = []
        for s in ax.series:
            groups: dict[str, int] = {}
            for colour in s.point_colors():
                key = "#" + "".join(f"{round(min(max(c, 0.0), 1.0) * 255):02x}" for c in colour[:3])
                groups[key] = groups.get(key, 0) + 1
            label = "" if s.label.startswith("_") else s.label  # matplotlib's own names (_child0) say nothing
            series.append({"kind": s.kind, "label": label, "points": len(s.points) or s.count,
                           "first": [tuple(round(v, 3) if v is not None else None for v in p) for p in s.points[:3]],
                           "colours": sorted(groups.items(), key=lambda item: -item[1])[:12],
                           "truncated": s.truncated})
        axes.append({"title": ax.title, "xlabel": ax.xlabel, "ylabel": ax.ylabel, "legend": ax.legend,
                     "series": series})
    return {"cell_index": parsed.cell_index, "suptitle": parsed.suptitle, "legend": parsed.legend,
            "error": parsed.error, "axes": axes}
