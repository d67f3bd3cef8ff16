"""nbgrader's gradebook is synced only when something changed: a regrade with nothing to do never opens it."""

from __future__ import annotations

import sqlite3

from autograder.record import GradebookEntry, sync_gradebook


def _scores(course) -> dict[str, tuple]:
    with sqlite3.connect(course / "gradebook.db") as db:
        return {row[0]: row[1:] for row in db.execute(
            "SELECT submitted_assignment.student_id, grade.auto_score, grade.manual_score FROM grade "
            "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
            "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id")}


def test_unchanged_entries_leave_the_gradebook_alone_and_a_change_is_synced(tmp_path):
    """The same entries twice: the second call writes nothing; a changed verdict or a gradebook written by
    someone else is synced again."""
    course = tmp_path / "nbgrader"
    entries = [GradebookEntry("1001", "Lena Schmidt", "", 1.0, None), GradebookEntry("1002", "Jonas Müller", "", 0.0, None)]
    sync_gradebook(course, "task5", entries)
    assert _scores(course) == {"1001": (1.0, None), "1002": (0.0, None)}
    written = (course / "gradebook.db").stat().st_mtime_ns

    sync_gradebook(course, "task5", entries)
    assert (course / "gradebook.db").stat().st_mtime_ns == written

    changed = [entries[0], GradebookEntry("1002", "Jonas Müller", "", 1.0, None)]
    sync_gradebook(course, "task5", changed)
    assert _scores(course)["1002"] == (1.0, None)

    with sqlite3.connect(course / "gradebook.db") as db:  # e.g. a TA in nbgrader's formgrader
        db.execute("UPDATE grade SET auto_score = 0")
    sync_gradebook(course, "task5", changed)
    assert _scores(course) == {"1001": (1.0, None), "1002": (1.0, None)}
