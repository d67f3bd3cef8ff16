"""Export: hand the verdicts back to Moodle by filling the grading worksheet Moodle offered for download.

The worksheet is edited in place: columns are found by header name (as Moodle's importer finds them), only
`Grade` and `Feedback comments` change, `Identifier` and `Last modified (grade)` stay verbatim, and the file
is written as Moodle writes it (UTF-8 with BOM, same separator). Grades are the scale texts of grader.toml;
feedback is German HTML naming the criteria that failed and why — never hidden tests or hidden data.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from autograder.config import Config, TaskConfig
from autograder.errors import ExportError
from autograder.moodle import participant_number, read_worksheet, write_worksheet
from autograder.record import ParticipantResult, current_results

VERDICT_WORDS = {"pass": "erfolgreich bearbeitet", "fail": "nicht erfolgreich bearbeitet"}


@dataclass
class ExportReport:
    written: list[str] = field(default_factory=list)
    not_graded: list[str] = field(default_factory=list)  # in the worksheet, no verdict (pending, error, draft)
    unknown: list[str] = field(default_factory=list)  # rows with no participant of this task


def export_worksheet(config: Config, task: TaskConfig, engine: Engine, worksheet: Path, out: Path) -> ExportReport:
    """Fill `worksheet` with the task's verdicts and feedback and write it to `out`."""
    sheet = read_worksheet(worksheet)
    headers = config.moodle
    sheet.require(headers.identifier_header, headers.grade_header, headers.modified_header)
    has_feedback = sheet.column(headers.feedback_header) is not None
    results = {r.participant: r for r in current_results(engine, task.id)}
    report = ExportReport()
    for row in sheet.rows:
        number = participant_number(sheet.get(row, headers.identifier_header), headers.participant_prefix)
        result = results.get(number or "")
        if result is None:
            report.unknown.append(sheet.get(row, headers.identifier_header))
            continue
        grade = _scale_text(config, result)
        if grade is None:
            report.not_graded.append(result.participant)
            continue
        sheet.set(row, headers.grade_header, grade)
        if has_feedback:
            sheet.set(row, headers.feedback_header, feedback_html(config, task, result))
        report.written.append(result.participant)
    try:
        write_worksheet(sheet, out)
    except OSError as exc:
        raise ExportError(f"{out}: cannot write worksheet ({exc.strerror})") from None
    return report


def _scale_text(config: Config, result: ParticipantResult) -> str | None:
    if result.status == "draft":
        return None
    return {"pass": config.scale.passed, "fail": config.scale.failed}.get(result.verdict)


def feedback_html(config: Config, task: TaskConfig, result: ParticipantResult) -> str:
    """The German feedback for one participant as one line of HTML (Moodle stores it as FORMAT_HTML)."""
    verdict = VERDICT_WORDS.get(result.verdict, "nicht bewertet")
    scale = {"pass": config.scale.passed, "fail": config.scale.failed}.get(result.verdict, verdict)
    parts = [f"<p><strong>{_e(task.title)}: {_e(scale)}</strong></p>"]
    if result.override_author:
        parts.append(f"<p>Die Bewertung wurde von der Betreuung angepasst: {_e(result.override_reason)}</p>")
    failed = [c for c in result.criteria if not c.passed and c.message]
    if result.verdict == "error":
        parts.append("<p>Ihre Abgabe konnte nicht automatisch geprüft werden.</p>")
    if failed:
        items = "".join(f"<li><strong>{_e(c.title)}</strong>: {_e(c.message)}</li>" for c in failed)
        parts.append(f"<p>Nicht erfüllt:</p><ul>{items}</ul>")
    elif result.verdict == "pass":
        parts.append("<p>Alle Kriterien sind erfüllt.</p>")
    passed = [c for c in result.criteria if c.passed]
    if passed:
        items = "".join(f"<li>{_e(c.title)}</li>" for c in passed)
        parts.append(f"<p>Erfüllt:</p><ul>{items}</ul>")
    if result.provisional:
        parts.append("<p>Vorläufige Bewertung: das Training lief im Schnellmodus auf der CPU.</p>")
    return "".join(parts)


def _e(text: str) -> str:
    return html.escape(text, quote=False)
