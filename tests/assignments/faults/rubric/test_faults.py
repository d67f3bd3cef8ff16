"""Rubric of the fault-test task: its behaviour is chosen by what the notebook printed, so that one run shows
every kind of rubric fault next to honest passes and fails.

The notebook prints one word: "ok" (passes), "wrong" (a student's fail), "raise" (the rubric raises), "hang"
(the rubric outlives its timeout), "crash" (the rubric's process dies).
"""

import os
import time

import pytest

pytestmark = pytest.mark.notebook("main")


def _word(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c["cell_type"] == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream").split()[0]


@pytest.mark.criterion("answer")
def test_answer(nb, settings):
    """Die Antwort stimmt"""
    word = _word(nb)
    if word == "raise":
        raise ValueError("a bug in the rubric")
    if word == "hang":
        time.sleep(3600)
    if word == "crash":
        os._exit(70)
    answer = 42 if word == "ok" else 0
    assert answer >= settings["min_answer"], "Die Antwort ist falsch."


@pytest.mark.criterion("printed")
def test_printed(nb):
    """Das Notebook gibt etwas aus"""
    assert _word(nb), "Das Notebook gibt nichts aus."
