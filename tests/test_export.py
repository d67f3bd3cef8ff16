"""grader export fills Moodle's worksheet in place: only Grade and Feedback comments change."""

from __future__ import annotations

import pytest

import csv
import io

from conftest import moodle_zip, notebook

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

HEADER = ('Identifier,"Full name","Email address",Status,Grade,Scale,"Grade can be changed",'
          '"Last modified (submission)","Last modified (grade)","Feedback comments"')
SCALE = '"nicht erfolgreich bearbeitet   erfolgreich bearbeitet"'


def _row(pid: str, name: str, modified: str = "-") -> str:
    return (f'"Participant {pid}","{name}",{pid}@example.edu,"Submitted for grading",,{SCALE},Yes,'
            f'"Monday, 10 November 2026, 9:15 AM",{modified if modified == "-" else chr(34) + modified + chr(34)},')


def test_export_fills_grade_and_feedback_only(sandboxcheck, tmp_path):
    """Scale texts in Grade, German HTML in Feedback comments, BOM kept, every other cell verbatim."""
    archive = moodle_zip(tmp_path / "m.zip", {
        "1000001": {"check.ipynb": notebook("print('fertig')")},
        "1000002": {"check.ipynb": notebook("print('noch nicht')")},
    })
    worksheet = tmp_path / "Grades.csv"
    lines = [HEADER, _row("1000001", "Anna Groß", "Tuesday, 11 November 2026, 8:00 AM"), _row("1000002", "Ben Öz"),
             _row("1000003", "Carla Nichtda")]
    worksheet.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode("utf-8"))
    assert sandboxcheck.cli("import", "sandboxcheck", archive, "--worksheet", worksheet).exit_code == 0
    assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0
    out = tmp_path / "Upload.csv"
    result = sandboxcheck.cli("export", "sandboxcheck", "--worksheet", worksheet, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 graded row(s), 0 without a verdict, 1 unknown" in result.stdout

    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    written = raw.decode("utf-8-sig").splitlines()
    assert written[0] == HEADER
    rows = list(csv.reader(io.StringIO("\n".join(written[1:]))))
    original = list(csv.reader(io.StringIO("\n".join(lines[1:]))))
    for before, after in zip(original, rows):
        for index, (a, b) in enumerate(zip(before, after)):
            if index not in (4, 9):
                assert a == b
    assert rows[0][4] == "erfolgreich bearbeitet"
    assert rows[1][4] == "nicht erfolgreich bearbeitet"
    assert rows[2][4] == "" and rows[2][9] == ""
    assert rows[0][9].startswith("<p><strong>Sandbox-Prüfung: erfolgreich bearbeitet</strong></p>")
    assert "<li><strong>Das Notebook meldet „fertig“</strong>: Das Notebook hat „fertig“ nicht ausgegeben.</li>" in rows[1][9]
    assert "\n" not in rows[1][9]


def test_export_needs_moodles_columns(sandboxcheck, tmp_path):
    """A worksheet without Moodle's required columns is one line and exit 4."""
    worksheet = tmp_path / "Grades.csv"
    worksheet.write_text("Name,Punkte\nAnna,3\n", encoding="utf-8")
    result = sandboxcheck.cli("export", "sandboxcheck", "--worksheet", worksheet, "--out", tmp_path / "o.csv")
    assert result.exit_code == 4
    assert result.stderr.strip() == ("error: Grades.csv: missing column(s) 'Identifier', 'Grade', "
                                      "'Last modified (grade)' (another language? set the header names under "
                                      "[moodle] in grader.toml)")


def _sheet(path, header: str, rows: list[str]):
    path.write_bytes(("\ufeff" + "\n".join([header, *rows]) + "\n").encode("utf-8"))
    return path


def _findings(result) -> list[str]:
    return [line.strip().removeprefix("skipped by Moodle: ") for line in result.stdout.splitlines()
            if "skipped by Moodle" in line]


def test_check_names_every_row_moodle_would_skip(sandboxcheck, tmp_path):
    """--check: unknown scale text, stale (non-English) date, empty grade, foreign identifier; exit 1."""
    from moodle_reader import Site, import_worksheet

    scale_sheet = _sheet(tmp_path / "Grades.csv", HEADER, [
        _row("1000001", "Anna Groß", "Tuesday, 11 November 2026, 8:00 AM").replace(",,", ",erfolgreich bearbeitet,", 1),
        _row("1000002", "Ben Öz").replace(",,", ",Completed,", 1),
        _row("1000003", "Carla Datum", "Dienstag, 11. November 2026, 08:00").replace(",,", ",erfolgreich bearbeitet,", 1),
        _row("1000004", "Dora Leer"),
        _row("1000005", "Emil Fremd").replace('"Participant 1000005"', '"Student 1000005"').replace(",,", ",erfolgreich bearbeitet,", 1),
    ])
    out = tmp_path / "Upload.csv"
    result = sandboxcheck.cli("export", "sandboxcheck", "--worksheet", scale_sheet, "--out", out, "--check")
    assert result.exit_code == 1, result.output
    assert _findings(result) == [
        "Participant 1000002 (Ben Öz): grade 'Completed' is not an item of the scale "
        "(nicht erfolgreich bearbeitet / erfolgreich bearbeitet): the row is skipped",
        "Participant 1000003 (Carla Datum): Last modified (grade) 'Dienstag, 11. November 2026, 08:00' is not an "
        "English date Moodle can read, so the row counts as modified in Moodle later and is skipped (unless 'Allow "
        "updating records that have been modified more recently in Moodle than in the spreadsheet' is ticked)",
        "Participant 1000004 (Dora Leer): empty grade: the row is skipped",
        "Student 1000005 (Emil Fremd): identifier is not 'Participant <id>': the row is skipped",
    ]
    # The independent reader agrees: with a grade record in Moodle, exactly those rows are skipped.
    site = Site(participants={f"100000{i}" for i in range(1, 6)},
                scale=["nicht erfolgreich bearbeitet", "erfolgreich bearbeitet"],
                existing={pid: (1, 1_700_000_000) for pid in ("1000001", "1000003")})
    moodle = import_worksheet(out.read_bytes(), site)
    assert moodle.grades == {"1000001": 2}
    assert set(moodle.skipped) == {"1000002", "1000003", "1000004", "Student 1000005"}


def test_check_points_over_maximum(sandboxcheck, tmp_path):
    """--check with a point-graded worksheet (German decimal comma in the cells): over the maximum is skipped."""
    header = HEADER.replace(",Scale,", ',"Maximum Grade",')
    rows = [f'"Participant 100000{i}","P {i}",p{i}@example.edu,"Submitted for grading",{grade},"100,00",Yes,'
            f'"Monday, 10 November 2026, 9:15 AM",-,' for i, grade in ((1, '"100,00"'), (2, '"120,50"'), (3, '"-1"'))]
    sheet = _sheet(tmp_path / "Grades.csv", header, rows)
    result = sandboxcheck.cli("export", "sandboxcheck", "--worksheet", sheet, "--out", tmp_path / "o.csv", "--check")
    assert result.exit_code == 1
    assert _findings(result) == ["Participant 1000002 (P 2): grade '120,50' is over the maximum 100: the row is skipped",
                                 "Participant 1000003 (P 3): grade '-1' is negative: the row is skipped"]


def test_worksheet_with_unknown_separator_is_rejected(sandboxcheck, tmp_path):
    """A worksheet whose separator Moodle's form does not offer is one line and exit 4, nothing written."""
    sheet = _sheet(tmp_path / "Grades.csv", HEADER.replace(",", "|"), [])
    out = tmp_path / "o.csv"
    result = sandboxcheck.cli("export", "sandboxcheck", "--worksheet", sheet, "--out", out)
    assert result.exit_code == 4
    assert result.stderr.strip() == f"error: {sheet}: not a Moodle grading worksheet (no separated header line)"
    assert not out.exists()


def test_team_members_get_the_teams_result_by_group_column(sandboxcheck, tmp_path):
    """Imported without worksheet, a team is found by the worksheet's Group column; each member gets a page."""
    import zipfile

    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Team Rot_7_assignsubmission_file/loesung.py", "print('fertig')")  # no notebook: error, no sandbox
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0
    header = HEADER.replace("Status,", "Status,Group,")
    rows = [_row(pid, name).replace('"Submitted for grading",', f'"Submitted for grading","{group}",')
            for pid, name, group in (("1000001", "Rosa Rot", "Team_Rot"), ("1000002", "Rudi Rot", "Team Rot"),
                                     ("1000003", "Grete Grün", "Team Grün"))]
    sheet = _sheet(tmp_path / "Grades.csv", header, rows)
    out, feedback = tmp_path / "Upload.csv", tmp_path / "feedback.zip"
    result = sandboxcheck.cli("export", "sandboxcheck", "--worksheet", sheet, "--out", out, "--feedback-zip", feedback)
    assert result.exit_code == 0, result.output
    assert "0 graded row(s), 2 without a verdict, 1 unknown" in result.stdout
    written = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    feedback_at = written[0].index("Feedback comments")
    assert ["nicht gefunden" in row[feedback_at] for row in written[1:]] == [True, True, False]
    with zipfile.ZipFile(feedback) as zf:
        assert sorted(zf.namelist()) == ["Rosa Rot_1000001_assignfeedback_file/feedback.html",
                                         "Rudi Rot_1000002_assignfeedback_file/feedback.html"]
