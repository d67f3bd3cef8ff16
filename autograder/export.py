"""Export: hand the verdicts back to Moodle by filling the grading worksheet Moodle offered for download.

The worksheet is edited in place: columns are found by header name (as Moodle's importer finds them), only
`Grade` and `Feedback comments` change, `Identifier` and `Last modified (grade)` stay verbatim, and the file
is written as Moodle writes it (UTF-8 with BOM, same separator). Grades are the scale texts of grader.toml
(or points, with the worksheet's decimal separator); feedback is German HTML naming the criteria passed and
failed — never hidden tests or hidden data. Team submissions: every member's row gets the team's result.
Optionally a feedback ZIP (`<name>_<participant id>_assignfeedback_file/feedback.html`) and a check of the
written worksheet against the rules of Moodle's importer (rows Moodle would skip without a word).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autograder.config import Config, TaskConfig
from autograder.errors import ExportError
from autograder.feedback import feedback_html, feedback_page
from autograder.models import Participant
from autograder.moodle import (
    DEFAULT_GROUP_ID, Worksheet, format_points, parse_points, participant_number, prefix_label, read_worksheet,
    scale_items, write_worksheet,
)
from autograder.record import ParticipantResult, current_results

__all__ = ["ExportReport", "check_worksheet", "export_worksheet", "feedback_html"]


@dataclass
class ExportReport:
    written: list[str] = field(default_factory=list)
    not_graded: list[str] = field(default_factory=list)  # in the worksheet, no verdict (pending, error, draft)
    unknown: list[str] = field(default_factory=list)  # rows with no participant of this task
    feedback_files: list[str] = field(default_factory=list)
    provisional: list[str] = field(default_factory=list)  # verdicts left out because they are provisional


@dataclass
class _Teams:
    """Team results by member participant id and by group name (for worksheets of team submissions)."""

    by_member: dict[str, str] = field(default_factory=dict)  # participant id -> group id
    by_name: dict[str, str] = field(default_factory=dict)  # prefix_label(group).casefold() -> group id


def export_worksheet(config: Config, task: TaskConfig, engine: Engine, worksheet: Path, out: Path,
                     feedback_zip: Path | None = None, include_provisional: bool = False) -> ExportReport:
    """Fill `worksheet` with the task's verdicts and feedback, write it to `out` (and the feedback ZIP).

    Only final verdicts become grades: `error` never does, and a provisional one (graded in fast mode) only
    with `include_provisional`; the rows left out are counted in the report.
    """
    sheet = read_worksheet(worksheet)
    headers = config.moodle
    sheet.require(headers.identifier_header, headers.grade_header, headers.modified_header)
    has_feedback = sheet.column(headers.feedback_header) is not None
    results = {r.participant: r for r in current_results(engine, task.id)}
    teams = _teams(engine, task, sheet, config)
    report, pages = ExportReport(), {}
    for row in sheet.rows:
        number = participant_number(sheet.get(row, headers.identifier_header), headers.participant_prefix)
        result = _result_for(sheet, row, number, results, teams, config)
        if number is None or result is None:
            report.unknown.append(sheet.get(row, headers.identifier_header))
            continue
        if result.status == "draft" or result.verdict == "pending":
            report.not_graded.append(number)
            continue
        if result.provisional and not include_provisional:
            report.provisional.append(number)
            continue
        grade = _grade(config, sheet, row, result)
        if grade is None:
            report.not_graded.append(number)  # error: no grade, but the student learns why
        else:
            sheet.set(row, headers.grade_header, grade)
            report.written.append(number)
        if has_feedback:
            sheet.set(row, headers.feedback_header, feedback_html(config, task, result))
        name = sheet.get(row, headers.fullname_header) or result.name
        pages[_feedback_path(name, number)] = feedback_page(config, task, result, name)
    _write(out, lambda tmp: write_worksheet(sheet, tmp), "worksheet")
    if feedback_zip is not None:
        _write(feedback_zip, lambda tmp: _write_feedback_zip(tmp, pages), "feedback ZIP")
        report.feedback_files = sorted(pages)
    return report


def _teams(engine: Engine, task: TaskConfig, sheet: Worksheet, config: Config) -> _Teams:
    teams = _Teams()
    team_sheet = sheet.column(config.moodle.group_header) is not None
    with Session(engine) as session:
        for p in session.exec(select(Participant).where(Participant.task == task.id)).all():
            if not (p.is_team or p.moodle_id == DEFAULT_GROUP_ID or team_sheet):
                continue
            for line in filter(None, p.members.splitlines()):
                teams.by_member[line.split(":", 1)[0]] = p.moodle_id
            label = config.moodle.default_group if p.moodle_id == DEFAULT_GROUP_ID else p.name
            teams.by_name.setdefault(prefix_label(label).casefold(), p.moodle_id)
    return teams


def _result_for(sheet: Worksheet, row: list[str], number: str | None, results: dict[str, ParticipantResult],
                teams: _Teams, config: Config) -> ParticipantResult | None:
    """A row's own result, or its team's (by the members recorded at import, else by the Group column)."""
    if number is None:
        return None
    if number in teams.by_member:
        return results.get(teams.by_member[number])
    group = sheet.get(row, config.moodle.group_header).strip()
    if group and prefix_label(group).casefold() in teams.by_name:
        return results.get(teams.by_name[prefix_label(group).casefold()])
    return results.get(number)


def _grade(config: Config, sheet: Worksheet, row: list[str], result: ParticipantResult) -> str | None:
    """The Grade cell: the scale text, or points in the worksheet's decimal notation; None if no verdict."""
    if result.verdict not in ("pass", "fail"):
        return None
    if not _graded_in_points(sheet, config):
        return config.scale.passed if result.verdict == "pass" else config.scale.failed
    separator = _decimal_separator(sheet, row, config)
    maximum = parse_points(sheet.get(row, config.moodle.maximum_header), separator)
    passed = config.scale.passed_points if config.scale.passed_points is not None else maximum
    if passed is None:
        raise ExportError(f"{sheet.source.name if sheet.source else 'worksheet'}: no maximum grade in row "
                          f"{sheet.get(row, config.moodle.identifier_header)!r} and no [scale] passed_points")
    return format_points(passed if result.verdict == "pass" else config.scale.failed_points, separator)


def _graded_in_points(sheet: Worksheet, config: Config) -> bool:
    return sheet.column(config.moodle.scale_header) is None and sheet.column(config.moodle.maximum_header) is not None


def _decimal_separator(sheet: Worksheet, row: list[str], config: Config) -> str:
    if config.moodle.decimal_separator:
        return config.moodle.decimal_separator
    return "," if "," in sheet.get(row, config.moodle.maximum_header) else "."


def _feedback_path(name: str, number: str) -> str:
    """Where Moodle's feedback-zip importer files a page under the participant (see moodle-formats.md §3)."""
    return f"{prefix_label(name) or 'Participant'}_{number}_assignfeedback_file/feedback.html"


def _write_feedback_zip(path: Path, pages: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, page in sorted(pages.items()):
            zf.writestr(name, page.encode("utf-8"))


def _write(path: Path, writer, what: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    try:
        writer(tmp)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{path}: cannot write {what} ({exc.strerror})") from None


# --- What Moodle's importer would do with a worksheet ------------------------------------------------------

_USERDATE_FORMATS = ("%A, %d %B %Y, %I:%M %p", "%A, %d %B %Y, %H:%M", "%d %B %Y, %I:%M %p", "%Y-%m-%d %H:%M")


def check_worksheet(config: Config, path: Path) -> list[str]:
    """Every row Moodle's offline-grading importer would skip without a word, one line each (empty: all import)."""
    sheet = read_worksheet(path)
    headers = config.moodle
    required = (headers.grade_header, headers.identifier_header, headers.modified_header)
    missing = [h for h in required if h not in [c.strip() for c in sheet.header]]
    if missing:  # Moodle compares the header text exactly: a column of another case is not found
        return [f"{path.name}: Moodle rejects the file: no column named exactly {', '.join(map(repr, missing))}"]
    return [f"{_who(sheet, row, config)}: {problem}" for row in sheet.rows if (problem := _row_problem(sheet, row, config))]


def _who(sheet: Worksheet, row: list[str], config: Config) -> str:
    name = sheet.get(row, config.moodle.fullname_header)
    return sheet.get(row, config.moodle.identifier_header) + (f" ({name})" if name else "")


def _row_problem(sheet: Worksheet, row: list[str], config: Config) -> str | None:
    headers = config.moodle
    if participant_number(sheet.get(row, headers.identifier_header), headers.participant_prefix) is None:
        return f"identifier is not '{headers.participant_prefix.strip()} <id>': the row is skipped"
    grade = sheet.get(row, headers.grade_header).strip()
    if not grade:
        return "empty grade: the row is skipped"
    problem = _points_problem(sheet, row, grade, config) if _graded_in_points(sheet, config) else \
        _scale_problem(sheet, row, grade, config)
    return problem or _stale_problem(sheet.get(row, headers.modified_header).strip(), headers.modified_header)


def _scale_problem(sheet: Worksheet, row: list[str], grade: str, config: Config) -> str | None:
    items = scale_items(sheet.get(row, config.moodle.scale_header)) or [config.scale.failed, config.scale.passed]
    if grade not in items:
        return f"grade {grade!r} is not an item of the scale ({' / '.join(items)}): the row is skipped"
    return None


def _points_problem(sheet: Worksheet, row: list[str], grade: str, config: Config) -> str | None:
    separator = _decimal_separator(sheet, row, config)
    value = parse_points(grade, separator)
    maximum = parse_points(sheet.get(row, config.moodle.maximum_header), separator)
    if value is None:
        return f"grade {grade!r} is not a number with decimal separator {separator!r}: the row is skipped"
    if value < 0:
        return f"grade {grade!r} is negative: the row is skipped"
    if maximum is not None and value > maximum:
        return f"grade {grade!r} is over the maximum {maximum:g}: the row is skipped"
    return None


def _stale_problem(modified: str, header: str) -> str | None:
    if modified in ("", "-") or _userdate(modified):
        return None
    return (f"{header} {modified!r} is not an English date Moodle can read, so the row counts as modified in "
            "Moodle later and is skipped (unless 'Allow updating records that have been modified more recently "
            "in Moodle than in the spreadsheet' is ticked)")


def _userdate(text: str) -> bool:
    for pattern in _USERDATE_FORMATS:
        try:
            datetime.strptime(text, pattern)
            return True
        except ValueError:
            continue
    return False
