"""What Moodle would import from our files, written from docs/moodle-formats.md §2–3 alone.

Independent of the grader on purpose: it must not import autograder.moodle or autograder.export, so that a
misreading of Moodle's rules in the exporter is not repeated here. It follows mod/assign's offline-grading
importer (`importgradeslib.php`, `process_import_grades`) and the feedback-zip importer (`importziplib.php`).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime


class InvalidGradeImport(Exception):
    """Moodle's 'invalidgradeimport': a required column is missing."""


@dataclass
class MoodleImport:
    grades: dict[str, float | int] = field(default_factory=dict)  # participant id -> points, or 1-based scale index
    feedback: dict[str, str] = field(default_factory=dict)  # participant id -> stored HTML text
    skipped: dict[str, str] = field(default_factory=dict)  # participant id (or identifier) -> why


@dataclass
class Site:
    """What Moodle knows that the worksheet does not: the assignment and its current grades."""

    participants: set[str]
    scale: list[str] | None = None  # the scale's items, in order; None: point grading
    maximum: float = 100.0
    decimal_separator: str = "."
    separator: str = ","  # chosen in the upload form
    grade_header: str = "Grade"  # get_string('gradenoun') in the importing user's language
    identifier_header: str = "Identifier"
    modified_header: str = "Last modified (grade)"
    feedback_header: str = "Feedback comments"
    hidden_user: str = "Participant "
    existing: dict[str, tuple[float | int, int]] = field(default_factory=dict)  # id -> (grade, timemodified)
    ignore_modified: bool = False


def import_worksheet(data: bytes, site: Site) -> MoodleImport:
    """Apply the offline grading importer to the worksheet bytes."""
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=site.separator))
    header, body = rows[0], [r for r in rows[1:] if r]
    columns = {}
    for wanted in (site.grade_header, site.identifier_header, site.modified_header):
        if wanted not in header:  # exact text, no case folding
            raise InvalidGradeImport(wanted)
        columns[wanted] = header.index(wanted)
    feedback_at = header.index(site.feedback_header) if site.feedback_header in header else None
    result = MoodleImport()
    for row in body:
        _import_row(row, columns, feedback_at, site, result)
    return result


def _import_row(row: list[str], columns: dict[str, int], feedback_at: int | None, site: Site,
                result: MoodleImport) -> None:
    identifier = row[columns[site.identifier_header]]
    pid = identifier[len(site.hidden_user):]
    if pid not in site.participants:
        result.skipped[identifier] = "not a participant"
        return
    existing = site.existing.get(pid)
    modified = _strtotime(row[columns[site.modified_header]])
    if existing and not site.ignore_modified and existing[1] > modified + 60:
        result.skipped[pid] = "stale"
        return
    if feedback_at is not None and row[feedback_at]:
        result.feedback[pid] = row[feedback_at]
    grade = _grade(row[columns[site.grade_header]], site)
    if grade is None:
        result.skipped[pid] = "grade not importable"
    elif existing and existing[0] == grade:
        result.skipped[pid] = "unchanged"
    else:
        result.grades[pid] = grade


def _grade(cell: str, site: Site) -> float | int | None:
    if site.scale is not None:
        menu = {index + 1: item.strip() for index, item in enumerate(site.scale)}
        found = [key for key, item in menu.items() if item == cell]  # array_search, exact
        return found[0] if found else None
    text = re.sub(r"\s", "", cell).replace(site.decimal_separator, ".")  # unformat_float
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= site.maximum else None


def _strtotime(text: str) -> int:
    """strtotime() on English userdate() strings; anything else (like '-') is false, i.e. 0."""
    for pattern in ("%A, %d %B %Y, %I:%M %p", "%A, %d %B %Y, %H:%M"):
        try:
            return int(datetime.strptime(text.strip(), pattern).timestamp())
        except ValueError:
            continue
    return 0


def import_feedback_zip(data: bytes, participants: set[str],
                        plugins: frozenset[str] = frozenset({"assignsubmission_file", "assignfeedback_file"})
                        ) -> dict[str, dict[str, bytes]]:
    """Apply the feedback-zip importer: participant id -> {stored file path: bytes}."""
    imported: dict[str, dict[str, bytes]] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if info.is_dir() or parts[-1].startswith((".", "~")):
                continue
            for index, part in enumerate(parts):
                pieces = part.split("_", 4)  # explode('_', $part, 5)
                if len(pieces) < 4 or not pieces[1].isdigit() or pieces[1] not in participants:
                    continue
                if f"{pieces[2]}_{pieces[3]}" not in plugins:
                    break
                path = "/".join(([pieces[4]] if len(pieces) == 5 else []) + parts[index + 1:])
                imported.setdefault(pieces[1], {})[path] = zf.read(info)
                break
    return imported
