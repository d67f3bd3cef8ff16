"""Helpers for a task's probe: code the grader appends to a notebook to ask the student's objects questions.

A probe runs in the student's kernel after the notebook (for example, the trained model answers hidden
queries). It reports JSON values through the notebook's own output channel under PROBE_MIME; the host
extracts them (autograder.capture.extract_probe) and the rubric judges them outside the sandbox, where the
answers' labels are. Probes see only public inputs: never put labels or expected values into one.
"""

from __future__ import annotations

import json
from pathlib import Path

PROBE_MIME = "application/vnd.notebook-grader.probe+json"
PROBE_DATA = Path("/grader/probe-data")


def report(name: str, value) -> None:
    """Send one named JSON value to the grader."""
    from IPython.display import display

    json.dumps(value)  # fail here, in the probe cell, if the value is not JSON
    display({PROBE_MIME: {"name": name, "value": value}, "text/plain": f"<grader probe: {name}>"}, raw=True)


def probe_data(name: str) -> Path:
    """Path of a public probe input file (mounted read-only at /grader/probe-data)."""
    return PROBE_DATA / name
