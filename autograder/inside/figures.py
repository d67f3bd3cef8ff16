"""IPython extension, loaded into the student's kernel: describe every shown matplotlib figure as JSON.

Whenever a figure is displayed (the inline backend at the end of a cell, `plt.show()`, `display(fig)`,
seaborn, subplots, several figures), IPython asks every registered formatter for a representation. This
module registers one for `matplotlib.figure.Figure` under FIGURE_MIME, so the executed notebook carries,
next to each figure's PNG, a description of what it shows: titles, axis labels, legend texts, and each
series with its points and each point's colour. The host reads it back (autograder.capture) and validates it.

It runs in the student's process, so it is only as trustworthy as the student's code: the rubric checks the
description against the data (points must be the data set's points), which faking cannot get around without
doing the task. Standard library and matplotlib only; every failure becomes an `"error"` entry, never an
exception in the student's display path.
"""

from __future__ import annotations

import math

FIGURE_MIME = "application/vnd.notebook-grader.figure+json"
SCHEMA_VERSION = 1
MAX_POINTS = 20_000  # per series; more are truncated (and flagged)
MAX_SERIES = 200  # per axes
MAX_AXES = 64  # per figure
MAX_TEXT = 300  # characters per label


def load_ipython_extension(ipython) -> None:
    """Register the figure formatter in this kernel (IPython calls this for `--ext` / `%load_ext`)."""
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    class FigureJSONFormatter(BaseFormatter):
        format_type = Unicode(FIGURE_MIME)
        _return_type = dict
        print_method = ObjectName("_repr_grader_figure_")

        # Dispatch on the class itself, not through the type registry: matplotlib_inline removes every
        # formatter's Figure entry when pyplot is first imported (select_figure_formats pops them).
        def __call__(self, obj):
            if self.enabled and _is_figure(obj):
                return describe_figure(obj)
            return None

    ipython.display_formatter.formatters[FIGURE_MIME] = FigureJSONFormatter(parent=ipython.display_formatter)


def _is_figure(obj) -> bool:
    return any(c.__name__ == "Figure" and c.__module__ == "matplotlib.figure" for c in type(obj).__mro__)


def describe_figure(figure) -> dict:
    """The JSON description of one figure (see the module docstring)."""
    try:
        axes = figure.get_axes()
        suptitle = figure._suptitle.get_text() if getattr(figure, "_suptitle", None) is not None else ""
        legends = [t for legend in getattr(figure, "legends", []) for t in _legend_texts(legend)]
        return {
            "version": SCHEMA_VERSION,
            "suptitle": _text(suptitle),
            "legend": legends,
            "axes": [_describe_axes(ax) for ax in axes[:MAX_AXES]],
            "truncated_axes": len(axes) > MAX_AXES,
        }
    except Exception as exc:  # never break the student's display
        return {"version": SCHEMA_VERSION, "error": f"{type(exc).__name__}: {exc}"[:MAX_TEXT], "axes": []}


def _describe_axes(ax) -> dict:
    series = []
    for collection in ax.collections:
        described = _describe_collection(collection)
        if described is not None:
            series.append(described)
    for line in ax.get_lines():
        series.append(_describe_line(line))
    bars = [_bar(patch) for patch in ax.patches if type(patch).__name__ == "Rectangle"]
    if bars:
        series.append({"kind": "bars", "label": "", "bars": bars[:MAX_POINTS], "count": len(bars)})
    if ax.images:
        series.append({"kind": "image", "label": "", "count": len(ax.images)})
    wedges = [p for p in ax.patches if type(p).__name__ == "Wedge"]
    if wedges:
        series.append({"kind": "pie", "label": "", "count": len(wedges)})
    legend = ax.get_legend()
    return {
        "title": _text(" ".join(t for t in (ax.get_title("left"), ax.get_title(), ax.get_title("right")) if t)),
        "xlabel": _text(ax.get_xlabel()),
        "ylabel": _text(ax.get_ylabel()),
        "legend": _legend_texts(legend) if legend is not None else [],
        "xticklabels": [_text(t.get_text()) for t in ax.get_xticklabels()][:200],
        "yticklabels": [_text(t.get_text()) for t in ax.get_yticklabels()][:200],
        "series": series[:MAX_SERIES],
        "truncated_series": len(series) > MAX_SERIES,
    }


def _describe_collection(collection) -> dict | None:
    kind = type(collection).__name__
    if kind != "PathCollection":  # scatter (plt.scatter, ax.scatter, seaborn); other collections are not data
        return None
    offsets = collection.get_offsets()
    count = len(offsets)
    if count == 0:
        return None
    collection.update_scalarmappable()  # resolve c=labels through the colormap, as drawing would
    colors = collection.get_facecolors()
    if len(colors) == 0:
        colors = collection.get_edgecolors()
    values = collection.get_array()
    shown = min(count, MAX_POINTS)
    return {
        "kind": "scatter",
        "label": _text(collection.get_label()),
        "points": [[_num(x), _num(y)] for x, y in offsets[:shown]],
        "colors": [_rgba(colors[i % len(colors)]) for i in range(shown)] if len(colors) else [],
        "values": [_num(v) for v in values[:shown]] if values is not None and len(values) == count else None,
        "count": count,
        "truncated": count > MAX_POINTS,
    }


def _describe_line(line) -> dict:
    xs, ys = line.get_xdata(orig=False), line.get_ydata(orig=False)
    count = min(len(xs), len(ys))
    shown = min(count, MAX_POINTS)
    marker = line.get_marker()
    linestyle = line.get_linestyle()
    from matplotlib.colors import to_rgba

    return {
        "kind": "line",
        "label": _text(line.get_label()),
        "points": [[_num(xs[i]), _num(ys[i])] for i in range(shown)],
        "color": _rgba(to_rgba(line.get_color())),
        "marker": "" if marker in (None, "None", "", " ") else str(marker),
        "linestyle": "" if linestyle in (None, "None", "", " ") else str(linestyle),
        "count": count,
        "truncated": count > MAX_POINTS,
    }


def _bar(patch) -> list[float]:
    return [_num(patch.get_x()), _num(patch.get_y()), _num(patch.get_width()), _num(patch.get_height())]


def _legend_texts(legend) -> list[str]:
    return [_text(t.get_text()) for t in legend.get_texts()][:100]


def _rgba(color) -> list[float]:
    return [round(float(c), 4) for c in tuple(color)[:4]]


def _num(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _text(value) -> str:
    return str(value or "")[:MAX_TEXT]
