"""Rubric of the sandbox-check task: the notebook must have printed 'fertig' (and run without errors)."""

import pytest

from autograder.rubric import describe_error

pytestmark = pytest.mark.notebook("main")


def _printed(nb) -> str:
    return "".join(
        output.get("text", "") for cell in nb.cells if cell["cell_type"] == "code"
        for output in cell.get("outputs", []) if output.get("output_type") == "stream"
    )


@pytest.mark.criterion("finished")
def test_finished(nb):
    """Das Notebook meldet „fertig“"""
    assert "fertig" in _printed(nb), "Das Notebook hat „fertig“ nicht ausgegeben."


@pytest.mark.criterion("no_errors")
def test_no_errors(nb):
    """Alle Zellen laufen ohne Fehler"""
    errors = nb.errors()
    assert not errors, " ".join(describe_error(e, nb.execution.get("cell_timeout")) for e in errors)
