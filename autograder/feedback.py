"""Feedback for students (German): the one-line HTML comment for the worksheet and the page for the feedback ZIP.

Built only from what a student may see: the verdict, each criterion's German title and message, an override's
reason. Staff-only detail (sandbox exit reasons, rubric tracebacks) and hidden tests or data never appear.
"""

from __future__ import annotations

import html

from autograder.config import Config, TaskConfig
from autograder.criteria import State
from autograder.record import ParticipantResult

VERDICT_WORDS = {"pass": "erfolgreich bearbeitet", "fail": "nicht erfolgreich bearbeitet"}
STATE_WORDS = {State.PASS: "✔ erfüllt", State.FAIL: "✘ nicht erfüllt", State.ERROR: "– nicht geprüft"}


def feedback_html(config: Config, task: TaskConfig, result: ParticipantResult) -> str:
    """The German feedback for one participant as one line of HTML (Moodle stores it as FORMAT_HTML)."""
    verdict = VERDICT_WORDS.get(result.verdict, "nicht bewertet")
    scale = {"pass": config.scale.passed, "fail": config.scale.failed}.get(result.verdict, verdict)
    parts = [f"<p><strong>{_e(task.title)}: {_e(scale)}</strong></p>"]
    if result.overridden:
        parts.append(f"<p>Die Bewertung wurde von der Betreuung angepasst: {_e(result.override_reason)}</p>")
    failed = [c for c in result.criteria if c.state is State.FAIL and c.message and c.required]
    # Advice (not part of the task's pass condition) never decides the verdict, but the student reads it apart.
    advice = [c for c in result.criteria if c.state is State.FAIL and c.message and not c.required]
    if result.verdict == "error":
        parts.append("<p>Ihre Abgabe konnte nicht automatisch geprüft werden. Bitte wenden Sie sich an die "
                     "Betreuung.</p>")
        if result.problem:
            parts.append(f"<p>{_e(result.problem)}</p>")
    if failed:
        items = "".join(f"<li><strong>{_e(c.title)}</strong>: {_lines(c.message)}</li>" for c in failed)
        parts.append(f"<p>Nicht erfüllt:</p><ul>{items}</ul>")
    elif result.verdict == "pass":
        parts.append("<p>Alle verlangten Kriterien sind erfüllt.</p>" if advice else
                     "<p>Alle Kriterien sind erfüllt.</p>")
    if advice:
        items = "".join(f"<li><strong>{_e(c.title)}</strong>: {_lines(c.message)}</li>" for c in advice)
        parts.append(f"<p>Hinweise (für die Bewertung nicht entscheidend):</p><ul>{items}</ul>")
    passed = [c for c in result.criteria if c.passed]
    if passed:
        items = "".join(f"<li>{_e(c.title)}</li>" for c in passed)
        parts.append(f"<p>Erfüllt:</p><ul>{items}</ul>")
    if result.provisional:
        parts.append("<p>Vorläufige Bewertung: das Training lief im Schnellmodus auf der CPU.</p>")
    return "".join(parts)


def feedback_page(config: Config, task: TaskConfig, result: ParticipantResult, name: str) -> str:
    """A whole German HTML page for the feedback ZIP: every criterion with its result and message."""
    rows = "".join(
        f"<tr><td>{STATE_WORDS[c.state]}</td><td>{_e(c.title)}"
        f"{'' if c.required else ' (Hinweis)'}</td><td>{_lines(c.message)}</td></tr>\n"
        for c in result.criteria
    )
    table = (
        "<table>\n<thead><tr><th>Ergebnis</th><th>Kriterium</th><th>Rückmeldung</th></tr></thead>\n"
        f"<tbody>\n{rows}</tbody>\n</table>\n" if rows else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="de">\n<head><meta charset="UTF-8">'
        f"<title>Rückmeldung: {_e(task.title)}</title>\n"
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}td,th{border:1px solid #ccc;"
        "padding:.3em .6em;text-align:left;vertical-align:top}table{border-collapse:collapse}</style></head>\n"
        f"<body>\n<h1>Rückmeldung zu {_e(task.title)}</h1>\n<p>{_e(name)}</p>\n"
        f"{feedback_html(config, task, result)}\n{table}</body>\n</html>\n"
    )


def _e(text: str) -> str:
    return html.escape(text, quote=False)


def _lines(text: str) -> str:
    """A message escaped, its line breaks kept (Moodle shows the feedback as HTML, where newlines vanish)."""
    return "<br>".join(_e(line) for line in text.strip().splitlines())
