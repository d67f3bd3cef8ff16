"""grader export fills Moodle's worksheet in place: only Grade and Feedback comments change."""

from __future__ import annotations

import csv
import io

from conftest import moodle_zip, notebook

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
                                      "'Last modified (grade)'")
