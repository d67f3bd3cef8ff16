"""One criterion's result: the single shape that crosses every stage.

The rubric's report, the grader's own checks, the database row, `grader status`, the feedback and the Moodle
export all carry a `Criterion`. Its `state` says who decides: `pass` and `fail` are the student's work,
`error` is a fault of the grader (a rubric that raised, timed out or could not run, a setting that is missing)
and never becomes a student's fail. `message` is German and shown to the student; `detail` is for staff only.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, computed_field


# What the student reads where the grader, not the work, failed (staff see the criterion's detail).
INTERNAL_ERROR_MESSAGE = "Dieses Kriterium konnte wegen eines internen Fehlers nicht geprüft werden."


class State(str, enum.Enum):
    """Stored in the database and in reports: never rename a value."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class Criterion(BaseModel):
    """The outcome of one criterion of one submission."""

    model_config = ConfigDict(frozen=True)

    id: str  # "<notebook id>.<criterion>", e.g. "clustering.dbscan_moons"
    notebook_id: str = ""
    title: str = ""  # German, shown in feedback
    required: bool = True  # decides the verdict; otherwise advice
    state: State
    message: str = ""  # German, for the student ("" when passed)
    detail: str = ""  # staff only: tracebacks, exit reasons, what a check measured

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.state is State.PASS


def verdict_of(criteria: Iterable[Criterion]) -> str:
    """pass when every required criterion passes; error when a required one could not be judged; else fail.

    A grader fault outranks a student's failure: the run is not a verdict until staff have seen the fault.
    """
    states = {c.state for c in criteria if c.required}
    if State.ERROR in states:
        return "error"
    return "fail" if State.FAIL in states else "pass"
