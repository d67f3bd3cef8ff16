"""Moodle round trip: import → grade (real bwrap sandbox) → export, read back with Moodle's own import rules.

The reader (tests/moodle_reader.py) is written from moodle-formats.md and shares no code with the exporter.
The tests share one workspace (each with its own participant ids) so that the two notebooks run in the
sandbox once and the other tests reuse the cached executions; any of them also runs alone.
"""

from __future__ import annotations

import re
import sqlite3
import zipfile

import pytest
from typer.testing import CliRunner

from autograder.cli import app
from conftest import SANDBOXCHECK_CONFIG, TEST_ASSIGNMENTS, Workspace, make_workspace, moodle_zip, notebook
from moodle_reader import Site, import_feedback_zip, import_worksheet

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

PASS = notebook("print('fertig')")
FAIL = notebook("print('noch nicht')")
SCALE = "nicht erfolgreich bearbeitet   erfolgreich bearbeitet"
HEADER = ('Identifier,"Full name","Email address",Status,Grade,Scale,"Grade can be changed",'
          '"Last modified (submission)","Last modified (grade)","Feedback comments"')


def _row(pid: str, name: str, status: str = "Submitted for grading") -> str:
    return (f'"Participant {pid}","{name}",{pid}@example.edu,"{status}",,"{SCALE}",Yes,'
            f'"Monday, 10 November 2026, 9:15 AM",-,')


def _write(path, header: str, rows: list[str]):
    path.write_bytes(("\ufeff" + "\n".join([header, *rows]) + "\n").encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Workspace:
    workspace = make_workspace(tmp_path_factory.mktemp("roundtrip") / "course", SANDBOXCHECK_CONFIG, TEST_ASSIGNMENTS)
    (workspace.root / "grader-de.toml").write_text(GERMAN, encoding="utf-8")
    # The task needs no offline data; without it the cache keys do not move when someone rebuilds it.
    (workspace.root / ".offline-data").unlink(missing_ok=True)
    return workspace


def _cli_de(workspace: Workspace, *args):
    """The same course folder (database, runs) with the German Moodle settings."""
    return CliRunner().invoke(app, ["-c", str(workspace.root / "grader-de.toml"), *map(str, args)],
                              catch_exceptions=False)


def test_individual_round_trip(shared, tmp_path):
    """Every graded participant's scale grade and feedback import into Moodle; feedback pages map to them."""
    archive = moodle_zip(tmp_path / "m.zip", {
        "1000001": {"Abgabe (1).ipynb": PASS}, "1000002": {"check.ipynb": FAIL},
        "1000003": {"check.ipynb": PASS}, "1000004": {"loesung.py": "print('fertig')"},
    }, names={"1000001": "Anna Groß", "1000002": "Ben ONeil", "1000003": "Carla Entwurf", "1000004": "Dora Py"})
    sheet = _write(tmp_path / "Grades.csv", HEADER, [
        _row("1000001", "Anna Groß"), _row("1000002", "Ben O'Neil"),
        _row("1000003", "Carla Entwurf", "Draft (not submitted)"), _row("1000004", "Dora Py"),
        _row("1000005", "Emil Ohneabgabe", "No submission")])
    assert shared.cli("import", "sandboxcheck", archive, "--worksheet", sheet).exit_code == 0
    assert shared.cli("grade", "sandboxcheck").exit_code == 0
    out, feedback = tmp_path / "Upload.csv", tmp_path / "feedback.zip"
    result = shared.cli("export", "sandboxcheck", "--worksheet", sheet, "--out", out,
                              "--feedback-zip", feedback, "--check")
    assert "Wrote" in result.stdout and "2 graded row(s), 2 without a verdict, 1 unknown" in result.stdout
    findings = sorted(line.strip() for line in result.stdout.splitlines() if "skipped by Moodle" in line)
    assert findings == [f"skipped by Moodle: Participant {pid} ({name}): empty grade: the row is skipped"
                        for pid, name in (("1000003", "Carla Entwurf"), ("1000004", "Dora Py"),
                                          ("1000005", "Emil Ohneabgabe"))]
    assert result.exit_code == 1  # --check: the rows without a grade would be skipped

    site = Site(participants={f"100000{i}" for i in range(1, 6)}, scale=SCALE.split("   "))
    moodle = import_worksheet(out.read_bytes(), site)
    assert moodle.grades == {"1000001": 2, "1000002": 1}
    assert set(moodle.feedback) == {"1000001", "1000002", "1000004"}
    assert moodle.feedback["1000001"].startswith("<p><strong>Sandbox-Prüfung: erfolgreich bearbeitet</strong>")
    assert "Das Notebook „check.ipynb“ wurde in der Abgabe nicht gefunden." in moodle.feedback["1000004"]
    assert set(moodle.skipped) == {"1000003", "1000004", "1000005"}

    with zipfile.ZipFile(feedback) as zf:
        assert sorted(zf.namelist()) == ["Anna Groß_1000001_assignfeedback_file/feedback.html",
                                         "Ben ONeil_1000002_assignfeedback_file/feedback.html",
                                         "Dora Py_1000004_assignfeedback_file/feedback.html"]
    pages = import_feedback_zip(feedback.read_bytes(), site.participants)
    assert set(pages) == {"1000001", "1000002", "1000004"} and all(set(p) == {"feedback.html"} for p in pages.values())
    failed_page = pages["1000002"]["feedback.html"].decode("utf-8")
    assert '<html lang="de">' in failed_page and "✘ nicht erfüllt" in failed_page and "✔ erfüllt" in failed_page
    assert "Das Notebook hat „fertig“ nicht ausgegeben." in failed_page
    hidden = (TEST_ASSIGNMENTS / "sandboxcheck" / "hidden" / "labels.txt").read_text(encoding="utf-8").strip()
    assert all(hidden not in page["feedback.html"].decode() for page in pages.values())
    assert "test_main" not in failed_page and "Traceback" not in failed_page


GERMAN = SANDBOXCHECK_CONFIG.replace("[sandbox]", """[moodle]
identifier_header = "Identifikator"
fullname_header = "Vollständiger Name"
email_header = "E-Mail-Adresse"
grade_header = "Bewertung"
modified_header = "Zuletzt geändert (Bewertung)"
feedback_header = "Feedback als Kommentar"
participant_prefix = "Teilnehmer/in "
draft_status = "Entwurf (nicht abgegeben)"
group_header = "Gruppe"
default_group = "Standardgruppe"
maximum_header = "Höchstbewertung"

[sandbox]""")
GERMAN_HEADER = ('Identifikator,"Vollständiger Name",E-Mail-Adresse,Status,Gruppe,Bewertung,Höchstbewertung,'
                 '"Bewertung kann geändert werden","Zuletzt geändert (Abgabe)","Zuletzt geändert (Bewertung)",'
                 '"Feedback als Kommentar"')


def _german_row(pid: str, name: str, group: str) -> str:
    return (f'"Teilnehmer/in {pid}","{name}",{pid}@example.edu,"Zur Bewertung abgegeben","{group}",,"100,00",Ja,'
            f'"Montag, 10. November 2026, 09:15",-,')


def test_team_round_trip_in_a_german_moodle_with_points(shared, tmp_path):
    """Team folders (group ids) → every member's row gets the team's points, with a decimal comma."""
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Team Rocket_42_assignsubmission_file/Abgabe (1).ipynb", PASS)  # same files as above:
        zf.writestr("Team Blau_43_assignsubmission_file/check.ipynb", FAIL)  # cached executions are reused
    sheet = _write(tmp_path / "Bewertungen.csv", GERMAN_HEADER, [
        _german_row("2000001", "Jessie Rakete", "Team Rocket"), _german_row("2000002", "James Rakete", "Team Rocket"),
        _german_row("2000003", "Berta Blau", "Team Blau")])
    imported = _cli_de(shared, "import", "sandboxcheck", archive, "--worksheet", sheet)
    assert "team 42: members 2000001, 2000002" in imported.stdout and "team 43: members 2000003" in imported.stdout
    assert _cli_de(shared, "grade", "sandboxcheck").exit_code == 0
    out = tmp_path / "Upload.csv"
    result = _cli_de(shared, "export", "sandboxcheck", "--worksheet", sheet, "--out", out, "--check")
    assert result.exit_code == 0, result.output
    assert "3 graded row(s)" in result.stdout and "Check: Moodle imports every row." in result.stdout

    site = Site(participants={"2000001", "2000002", "2000003"}, decimal_separator=",", grade_header="Bewertung",
                identifier_header="Identifikator", modified_header="Zuletzt geändert (Bewertung)",
                feedback_header="Feedback als Kommentar", hidden_user="Teilnehmer/in ")
    moodle = import_worksheet(out.read_bytes(), site)
    assert moodle.grades == {"2000001": 100.0, "2000002": 100.0, "2000003": 0.0}
    assert moodle.skipped == {}
    assert set(moodle.feedback) == {"2000001", "2000002", "2000003"}
    assert "100,00" in out.read_text(encoding="utf-8-sig")


def test_resubmission_supersedes_changed_and_keeps_unchanged_results(shared, tmp_path):
    """A second import: a changed upload becomes current (history kept, regraded); an unchanged one keeps its run."""
    first = moodle_zip(tmp_path / "a.zip", {"3000001": {"check.ipynb": PASS}, "3000002": {"check.ipynb": FAIL}})
    assert shared.cli("import", "sandboxcheck", first).exit_code == 0
    assert shared.cli("grade", "sandboxcheck").exit_code == 0
    second = moodle_zip(tmp_path / "b.zip", {"3000001": {"check.ipynb": PASS}, "3000002": {"check.ipynb": PASS}})
    again = shared.cli("import", "sandboxcheck", second)
    assert "0 new, 1 changed, 1 unchanged." in again.stdout
    status = shared.status("sandboxcheck")
    assert status["3000001"]["verdict"] == "pass" and status["3000002"]["verdict"] == "pending"
    with sqlite3.connect(shared.root / "grader.db") as db:
        history = db.execute("SELECT p.moodle_id, s.current FROM submission s JOIN participant p "
                             "ON p.id = s.participant_id WHERE p.moodle_id LIKE '300000_' ORDER BY s.id").fetchall()
    assert history == [("3000001", 1), ("3000002", 0), ("3000002", 1)]
    regrade = shared.cli("grade", "sandboxcheck")
    assert re.search(r"Graded 1 submission\(s\) \(1 pass\); \d+ already graded\.", regrade.stdout), regrade.stdout
    assert shared.status("sandboxcheck")["3000002"]["verdict"] == "pass"


def test_reader_is_independent_of_the_exporter():
    """moodle_reader.py imports nothing of the grader, so it cannot share the exporter's mistakes."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).parent / "moodle_reader.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and not any(name.split(".")[0] == "autograder" for name in imported)
