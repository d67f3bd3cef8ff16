"""grader import: a Moodle ZIP goes in whole or not at all; only a participant's own broken upload is quarantined."""

from __future__ import annotations

import io
import sqlite3
import stat
import unicodedata
import zipfile
import zlib

import nbformat
import pytest

from conftest import moodle_zip, notebook

NB = notebook("print('fertig')")


def _files(workspace) -> list[str]:
    root = workspace.root / "submissions"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _rows(workspace, table: str) -> int:
    database = workspace.root / "grader.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_imports_participants_files_and_hashes(sandboxcheck, tmp_path):
    """Each participant's files land under submissions/TASK/<id>/ and in the database with their hashes."""
    archive = moodle_zip(tmp_path / "m.zip", {"1234567": {"check.ipynb": NB, "data/extra.csv": "a,b\n1,2\n"},
                                             "7654321": {"check.ipynb": NB}},
                         names={"1234567": "Jürgen Groß", "7654321": "Ali Khan"})
    result = sandboxcheck.cli("import", "sandboxcheck", archive)
    assert result.exit_code == 0, result.output
    assert "Imported 2 participant(s) from m.zip: 2 new, 0 changed, 0 unchanged." in result.stdout
    files = _files(sandboxcheck)
    assert len(files) == 3
    assert any(f.startswith("sandboxcheck/1234567/") and f.endswith("/data/extra.csv") for f in files)
    with sqlite3.connect(sandboxcheck.root / "grader.db") as db:
        names = dict(db.execute("SELECT moodle_id, name FROM participant").fetchall())
        hashes = db.execute("SELECT path, length(sha256), notebook_id FROM submittedfile ORDER BY path").fetchall()
    assert names == {"1234567": "Jürgen Groß", "7654321": "Ali Khan"}
    assert ("check.ipynb", 64, "main") in hashes and ("data/extra.csv", 64, "") in hashes

    again = sandboxcheck.cli("import", "sandboxcheck", archive)
    assert "0 new, 0 changed, 2 unchanged." in again.stdout
    assert _rows(sandboxcheck, "submission") == 2


def _zip_with(tmp_path, name: str, content: bytes = b"x", *, symlink: bool = False, flag: int = 0,
              good: bool = True, compress: int = zipfile.ZIP_DEFLATED):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if good:
            zf.writestr("Anna Berg_1111111_assignsubmission_file/check.ipynb", NB)
        info = zipfile.ZipInfo(name)
        info.compress_type = compress
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, content)
    if flag:
        _set_flag(path, name.encode(), flag)
    return path


def _set_flag(path, name: bytes, flag: int) -> None:
    """Set a general-purpose flag bit of one member in its local and central headers (zipfile won't)."""
    data = bytearray(path.read_bytes())
    for signature, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            if data[start + name_at:start + name_at + len(name)] == name:
                data[start + flag_at] |= flag
            start += 4
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("build, message", [
    (lambda t: _zip_with(t, "/etc/passwd"), "member '/etc/passwd' has an absolute path"),
    (lambda t: _zip_with(t, "Eve Evil_2222222_assignsubmission_file/../../escape.ipynb"),
     "member 'Eve Evil_2222222_assignsubmission_file/../../escape.ipynb' leaves the archive folder ('..')"),
    (lambda t: _zip_with(t, "Eve Evil_2222222_assignsubmission_file/link.ipynb", b"/etc/shadow", symlink=True),
     "member 'Eve Evil_2222222_assignsubmission_file/link.ipynb' is a symbolic link"),
    (lambda t: _zip_with(t, "Eve Evil_2222222_assignsubmission_file/packed.ipynb", compress=zipfile.ZIP_BZIP2),
     "member 'Eve Evil_2222222_assignsubmission_file/packed.ipynb' uses compression method 12 (Moodle writes "
     "stored or deflated members)"),
    (lambda t: _zip_with(t, "Eve Evil_2222222_assignsubmission_file/secret.ipynb", flag=0x1),
     "member 'Eve Evil_2222222_assignsubmission_file/secret.ipynb' is encrypted"),
    (lambda t: _zip_with(t, "notes/readme.txt"), "member 'notes/readme.txt' is not in Moodle's naming scheme"),
    (lambda t: _zip_with(t, "notes/readme.txt", good=False),
     "not a Moodle submissions download (e.g. 'notes/readme.txt' does not name a participant as "
     "'Name_1234567_assignsubmission_file/...')"),
])
def test_bad_archive_imports_nothing(sandboxcheck, tmp_path, build, message):
    """A member Moodle never writes rejects the whole ZIP: one line, exit 4, no files, no rows."""
    result = sandboxcheck.cli("import", "sandboxcheck", build(tmp_path))
    assert result.exit_code == 4
    assert result.stderr.strip() == f"error: bad.zip: {message}"
    assert _files(sandboxcheck) == []
    assert _rows(sandboxcheck, "participant") == 0


def test_empty_corrupt_and_missing_archives(sandboxcheck, tmp_path):
    """An empty ZIP, a truncated ZIP and a missing file are each one line and exit 4."""
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    good = moodle_zip(tmp_path / "good.zip", {"1111111": {"check.ipynb": NB}})
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:200])
    cases = [(empty, "error: empty.zip: the archive is empty"),
             (truncated, "error: truncated.zip: not a readable ZIP archive (File is not a zip file)"),
             (tmp_path / "missing.zip", f"error: {tmp_path / 'missing.zip'}: file not found")]
    for archive, line in cases:
        result = sandboxcheck.cli("import", "sandboxcheck", archive)
        assert result.exit_code == 4
        assert result.stderr.strip() == line
    assert _files(sandboxcheck) == []


# --- Layouts ------------------------------------------------------------------------------------------------


def _raw_zip(path, members: dict[str, str | bytes]):
    """A ZIP with exactly these member names (Moodle sets the UTF-8 flag; zipfile does for non-ASCII names)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def _imported(workspace) -> dict[str, dict]:
    """participant id -> {name, email, status, files: {path: notebook id}} of the current submissions."""
    with sqlite3.connect(workspace.root / "grader.db") as db:
        rows = db.execute(
            "SELECT p.moodle_id, p.name, p.email, s.status, f.path, f.notebook_id, p.is_team, p.members "
            "FROM participant p JOIN submission s ON s.participant_id = p.id AND s.current "
            "JOIN submittedfile f ON f.submission_id = s.id").fetchall()
    found: dict[str, dict] = {}
    for moodle_id, name, email, status, path, notebook_id, is_team, members in rows:
        entry = found.setdefault(moodle_id, {"name": name, "email": email, "status": status, "files": {},
                                             "team": bool(is_team), "members": members})
        entry["files"][path] = notebook_id
    return found


def _stored(workspace, participant: str, path: str) -> bytes:
    [hit] = list((workspace.root / "submissions" / "sandboxcheck" / participant).glob(f"*/{path}"))
    return hit.read_bytes()


@pytest.mark.parametrize("members", [
    pytest.param({"Jane Doe_1234567_assignsubmission_file/check.ipynb": NB,
                  "Jane Doe_1234567_assignsubmission_file/data/input.csv": "x\n"}, id="4.1-folders"),
    pytest.param({"Jane Doe_1234567_assignsubmission_file_/check.ipynb": NB,
                  "Jane Doe_1234567_assignsubmission_file_/data/input.csv": "x\n"}, id="3.x-folders"),
    pytest.param({"Jane Doe_1234567_assignsubmission_file_check.ipynb": NB,
                  "Jane Doe_1234567_assignsubmission_file_input.csv": "x\n"}, id="flat"),
    pytest.param({"Participant_1234567_assignsubmission_file/check.ipynb": NB,
                  "Participant_1234567_assignsubmission_file/data/input.csv": "x\n"}, id="blind"),
    pytest.param({"Team Rocket-Jane Doe_1234567_assignsubmission_file_/check.ipynb": NB,
                  "Team Rocket-Jane Doe_1234567_assignsubmission_file_/data/input.csv": "x\n"}, id="3.x-team-member"),
])
def test_every_moodle_layout(sandboxcheck, tmp_path, members):
    """4.1+ folders, 3.1–4.0 folders with '_', flat files and blind marking give the same participant."""
    result = sandboxcheck.cli("import", "sandboxcheck", _raw_zip(tmp_path / "m.zip", members))
    assert result.exit_code == 0, result.output
    [(participant, entry)] = _imported(sandboxcheck).items()
    assert participant == "1234567"
    assert entry["name"] in ("Jane Doe", "Participant", "Team Rocket-Jane Doe")
    assert entry["files"]["check.ipynb"] == "main"
    assert {p for p in entry["files"] if p.endswith("input.csv")} in ({"data/input.csv"}, {"input.csv"})


def test_online_text_and_several_files_and_unicode(sandboxcheck, tmp_path):
    """Online text is a file (onlinetext.html); NFD names are stored NFC; every file of a participant is kept."""
    nfd_name = unicodedata.normalize("NFD", "Jürgen Groß")
    nfd_file = unicodedata.normalize("NFD", "Lösung/Übersicht.md")
    html = '<!DOCTYPE html><html><head><meta charset="UTF-8"></head><body><p>Antwort</p></body></html>'
    archive = _raw_zip(tmp_path / "m.zip", {
        f"{nfd_name}_1234567_assignsubmission_file/check.ipynb": NB,
        f"{nfd_name}_1234567_assignsubmission_file/{nfd_file}": "# Übersicht\n",
        f"{nfd_name}_1234567_assignsubmission_file/notes.txt": "n",
        f"{nfd_name}_1234567_assignsubmission_onlinetext/onlinetext.html": html,
    })
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    entry = _imported(sandboxcheck)["1234567"]
    assert entry["name"] == "Jürgen Groß" and unicodedata.is_normalized("NFC", entry["name"])
    assert set(entry["files"]) == {"check.ipynb", "Lösung/Übersicht.md", "notes.txt", "onlinetext.html"}
    assert _stored(sandboxcheck, "1234567", "onlinetext.html").decode() == html
    assert _stored(sandboxcheck, "1234567", "Lösung/Übersicht.md") == "# Übersicht\n".encode()


TEAM_HEADER = ('Identifier,"Full name","Email address",Status,Group,Grade,Scale,"Grade can be changed",'
               '"Last modified (submission)","Last modified (grade)","Feedback comments"')


def _team_row(pid: str, name: str, group: str, status: str = "Submitted for grading") -> str:
    return (f'"Participant {pid}","{name}",{pid}@example.edu,"{status}","{group}",,"nicht erfolgreich bearbeitet   '
            f'erfolgreich bearbeitet",Yes,"Monday, 10 November 2026, 9:15 AM",-,')


def _worksheet(path, header: str, rows: list[str]):
    path.write_bytes(("\ufeff" + "\n".join([header, *rows]) + "\n").encode("utf-8"))
    return path


def test_team_submissions_record_members(sandboxcheck, tmp_path):
    """Group id folders and 'Default group' become teams whose members come from the worksheet's Group column."""
    archive = _raw_zip(tmp_path / "m.zip", {
        "Team Rocket_42_assignsubmission_file/check.ipynb": NB,
        "Default group_assignsubmission_file/check.ipynb": NB,
    })
    sheet = _worksheet(tmp_path / "Grades.csv", TEAM_HEADER, [
        _team_row("1000001", "Jessie A", "Team_Rocket"), _team_row("1000002", "James B", "Team Rocket"),
        _team_row("1000003", "Ohne Gruppe", "Default group")])
    result = sandboxcheck.cli("import", "sandboxcheck", archive, "--worksheet", sheet)
    assert result.exit_code == 0, result.output
    assert "team 42: members 1000001, 1000002" in result.stdout
    assert "team 0: members 1000003" in result.stdout
    teams = _imported(sandboxcheck)
    assert teams["42"]["team"] and teams["42"]["members"] == "1000001:Jessie A\n1000002:James B"
    assert teams["0"]["name"] == "Default group" and teams["0"]["members"] == "1000003:Ohne Gruppe"


@pytest.mark.sandbox
def test_drafts_are_reported_and_not_graded(sandboxcheck, tmp_path):
    """A worksheet 'Draft (not submitted)' row is imported as a draft, reported, and skipped by grade."""
    archive = moodle_zip(tmp_path / "m.zip", {"1000001": {"check.ipynb": NB}})
    sheet = _worksheet(tmp_path / "Grades.csv", TEAM_HEADER.replace("Group,", ""), [
        _team_row("1000001", "Anna Entwurf", "x", "Draft (not submitted)").replace(',"x"', "")])
    result = sandboxcheck.cli("import", "sandboxcheck", archive, "--worksheet", sheet)
    assert "drafts (not graded): 1000001" in result.stdout
    assert _imported(sandboxcheck)["1000001"]["status"] == "draft"
    graded = sandboxcheck.cli("grade", "sandboxcheck")
    assert graded.exit_code == 0, graded.output
    assert "Graded 0 submission(s)" in graded.stdout
    assert sandboxcheck.status("sandboxcheck")["1000001"]["verdict"] == "pending"


# --- A ZIP inside the submission ----------------------------------------------------------------------------


def _zip_bytes(members: dict[str, bytes | str], *, symlink: str | None = None,
               compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compress) as zf:
        for name, content in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compress
            if name == symlink:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, content)
    return buffer.getvalue()


GIT_OBJECT = zlib.compress(b"blob 7\0fertig\n")


def test_nested_zip_is_unpacked_into_a_folder(sandboxcheck, tmp_path):
    """repo.zip becomes the folder repo/ (not kept as a file); .git/ survives byte for byte; one level deep."""
    inner = _zip_bytes({"check.ipynb": NB, ".git/HEAD": "ref: refs/heads/main\n",
                        ".git/objects/ab/cdef0123456789": GIT_OBJECT, "deeper.zip": _zip_bytes({"x.txt": "x"})})
    archive = moodle_zip(tmp_path / "m.zip", {"1234567": {"repo.zip": inner, "readme.txt": "hi"}})
    result = sandboxcheck.cli("import", "sandboxcheck", archive)
    assert result.exit_code == 0, result.output
    files = _imported(sandboxcheck)["1234567"]["files"]
    assert files == {"readme.txt": "", "repo/check.ipynb": "main", "repo/.git/HEAD": "",
                     "repo/.git/objects/ab/cdef0123456789": "", "repo/deeper.zip": ""}
    assert _stored(sandboxcheck, "1234567", "repo/.git/objects/ab/cdef0123456789") == GIT_OBJECT
    assert zlib.decompress(_stored(sandboxcheck, "1234567", "repo/.git/objects/ab/cdef0123456789")).endswith(b"fertig\n")


def _encrypted_inner() -> bytes:
    path_bytes = bytearray(_zip_bytes({"secret.ipynb": NB}))
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = path_bytes.find(signature)
        path_bytes[start + flag_at] |= 0x1
    return bytes(path_bytes)


def _damaged_inner() -> bytes:
    """A student's ZIP whose member fails its CRC (a broken upload, not a broken Moodle download)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("notes.txt", "unversehrt")
    return buffer.getvalue().replace(b"unversehrt", b"beschaedig")


def _quarantined(workspace) -> dict[str, tuple[str, int]]:
    """participant id -> (problem, number of files) of the current submissions."""
    with sqlite3.connect(workspace.root / "grader.db") as db:
        rows = db.execute(
            "SELECT p.moodle_id, s.problem, (SELECT COUNT(*) FROM submittedfile f WHERE f.submission_id = s.id) "
            "FROM participant p JOIN submission s ON s.participant_id = p.id AND s.current").fetchall()
    return {moodle_id: (problem, files) for moodle_id, problem, files in rows}


def _mostly_zeros(size: int) -> bytes:
    return b"\0" * size


# participant id -> (what they uploaded, the staff line of the import, the German problem text)
BROKEN_UPLOADS = {
    "2000001": ({"repo.zip": b"PK\x03\x04 this is not really a zip"},
                "repo.zip: not a readable ZIP archive (File is not a zip file)",
                "Ihre ZIP-Datei „repo.zip“ ist beschädigt und konnte nicht entpackt werden. Bitte laden Sie sie "
                "erneut hoch."),
    "2000002": ({"repo.zip": _damaged_inner()},
                "repo.zip: member 'notes.txt' is corrupt (Bad CRC-32 for file 'notes.txt')",
                "Ihre ZIP-Datei „repo.zip“ ist beschädigt und konnte nicht entpackt werden. Bitte laden Sie sie "
                "erneut hoch."),
    "2000003": ({"repo.zip": _encrypted_inner()},
                "repo.zip: member 'secret.ipynb' is encrypted",
                "Ihre ZIP-Datei „repo.zip“ ist verschlüsselt (mit einem Passwort geschützt) und kann nicht entpackt "
                "werden. Bitte laden Sie sie ohne Passwort erneut hoch."),
    "2000004": ({"repo.zip": _zip_bytes({"check.ipynb": NB, "link": "/etc/shadow"}, symlink="link")},
                "repo.zip: member 'link' is a symbolic link",
                "Ihre Abgabe enthält eine symbolische Verknüpfung („link“). Bitte laden Sie statt der Verknüpfung die "
                "Datei selbst hoch."),
    "2000005": ({"repo.zip": _zip_bytes({"check.ipynb": NB, "bad\x07name.py": "x"})},
                "repo.zip: member 'bad\\x07name.py': not a valid file name",
                "Ihre Abgabe enthält einen ungültigen Dateinamen („bad?name.py“). Bitte benennen Sie die Datei um "
                "(ohne Steuerzeichen, nicht zu lang) und laden Sie die Abgabe erneut hoch."),
    "2000006": ({"repo.zip": _zip_bytes({"n" * 300 + ".py": "x"})},
                f"repo.zip: member '{'n' * 300}.py': not a valid file name",
                f"Ihre Abgabe enthält einen ungültigen Dateinamen („{'n' * 79}…“). Bitte benennen Sie die Datei um "
                "(ohne Steuerzeichen, nicht zu lang) und laden Sie die Abgabe erneut hoch."),
    "2000007": ({"repo.zip": _zip_bytes({"check.ipynb": NB, "../../escape.py": "x"})},
                "repo.zip: member '../../escape.py' leaves the archive folder ('..')",
                "Ihre ZIP-Datei „repo.zip“ enthält einen Pfad, der aus dem Ordner der Abgabe hinausführt "
                "(„../../escape.py“). Bitte packen Sie nur den Ordner Ihrer Abgabe und laden Sie die ZIP-Datei "
                "erneut hoch."),
    "2000008": ({"repo.zip": _zip_bytes({"/etc/cron.d/x": "x"})},
                "repo.zip: member '/etc/cron.d/x' has an absolute path",
                "Ihre ZIP-Datei „repo.zip“ enthält einen Pfad, der aus dem Ordner der Abgabe hinausführt "
                "(„/etc/cron.d/x“). Bitte packen Sie nur den Ordner Ihrer Abgabe und laden Sie die ZIP-Datei "
                "erneut hoch."),
    "2000009": ({"repo.zip": _zip_bytes({"check.ipynb": NB, "bomb.bin": _mostly_zeros(5 * 1024 * 1024)})},
                "repo/bomb.bin: unpacks to 5242880 bytes, past the limit of 1048576 for one upload",
                "Ihre Abgabe ist entpackt zu groß (mehr als 1 MB) und wurde nicht angenommen. Bitte laden Sie nur "
                "die für die Aufgabe nötigen Dateien hoch."),
    "2000010": ({"check.ipynb": NB, "daten.csv": _mostly_zeros(2 * 1024 * 1024)},
                "daten.csv: unpacks to 2097152 bytes, past the limit of 1048576 for one upload",
                "Ihre Abgabe ist entpackt zu groß (mehr als 1 MB) und wurde nicht angenommen. Bitte laden Sie nur "
                "die für die Aufgabe nötigen Dateien hoch."),
    "2000011": ({"repo.zip": _zip_bytes({f"f{i}.txt": "x" for i in range(4)})},
                "repo/f3.txt: more than 3 files",
                "Ihre Abgabe enthält zu viele Dateien (mehr als 3). Bitte laden Sie nur die für die Aufgabe nötigen "
                "Dateien hoch."),
    "2000012": ({"repo": "x", "repo.zip": _zip_bytes({"a.txt": "a"})},
                "'repo/a.txt' is there twice, or both a file and a folder",
                "Ihre Abgabe enthält „repo/a.txt“ doppelt oder zugleich als Datei und als Ordner und kann so nicht "
                "gespeichert werden. Bitte laden Sie sie ohne diese Doppelung erneut hoch."),
    "2000013": ({"repo.zip": _zip_bytes({"check.ipynb": NB}, compress=zipfile.ZIP_BZIP2)},
                "repo.zip: member 'check.ipynb' uses compression method 12",
                "Ihre ZIP-Datei „repo.zip“ ist mit einem Verfahren komprimiert, das nicht entpackt werden kann. Bitte "
                "erstellen Sie sie mit der üblichen Einstellung („Deflate“) neu und laden Sie sie erneut hoch."),
}


@pytest.fixture
def small_uploads(monkeypatch):
    """One upload may hold 1 MiB in 3 files, so the size and count limits are reached with small archives."""
    from autograder import ingest

    monkeypatch.setattr(ingest, "MAX_UPLOAD_BYTES", 1024 * 1024)
    monkeypatch.setattr(ingest, "MAX_UPLOAD_FILES", 3)


def test_broken_uploads_quarantine_only_their_participant(sandboxcheck, tmp_path, small_uploads):
    """Each kind of unusable upload is imported without files and with its German problem; the good one and
    the import go on (exit 0), and the summary names every quarantined participant."""
    uploads = {"1000001": {"check.ipynb": NB, "repo.zip": _zip_bytes({"data/input.csv": "a,b\n"})}}
    uploads |= {pid: files for pid, (files, _, _) in BROKEN_UPLOADS.items()}
    result = sandboxcheck.cli("import", "sandboxcheck", moodle_zip(tmp_path / "m.zip", uploads))

    assert result.exit_code == 0, result.output
    assert f"Imported {len(uploads)} participant(s) from m.zip: {len(uploads)} new, 0 changed, 0 unchanged." in result.stdout
    for pid, (_, staff_line, _) in BROKEN_UPLOADS.items():
        assert f"  {pid}: quarantined: {staff_line}\n" in result.stdout
    assert ("  quarantined (upload unusable; imported without files, graded 'error'): "
            + ", ".join(BROKEN_UPLOADS)) in result.stdout
    assert _imported(sandboxcheck)["1000001"]["files"] == {"check.ipynb": "main", "repo/data/input.csv": ""}
    found = _quarantined(sandboxcheck)
    assert found.pop("1000001") == ("", 2)
    assert found == {pid: (problem, 0) for pid, (_, _, problem) in BROKEN_UPLOADS.items()}
    assert [f for f in _files(sandboxcheck) if not f.startswith("sandboxcheck/1000001/")] == []
    assert [p.name for p in (sandboxcheck.root / "submissions" / "sandboxcheck").iterdir() if p.name.startswith(".")] == []


@pytest.mark.sandbox
def test_quarantined_upload_is_graded_error(sandboxcheck, tmp_path):
    """A quarantined participant has nothing to run and gets the verdict `error`, with the problem recorded."""
    archive = moodle_zip(tmp_path / "m.zip", {"2000001": {"repo.zip": _encrypted_inner()}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive).exit_code == 0
    assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0  # the student's upload, not a grader fault
    row = sandboxcheck.status("sandboxcheck")["2000001"]
    assert row["verdict"] == "error"
    problem = BROKEN_UPLOADS["2000003"][2]
    assert _quarantined(sandboxcheck)["2000001"] == (problem, 0)
    assert [(c["id"], c["state"], c["message"]) for c in row["criteria"]] == [("upload.usable", "fail", problem)]


def test_quarantined_participant_is_a_new_version_when_fixed(sandboxcheck, tmp_path):
    """The same broken upload again is unchanged; a repaired one replaces it and clears the problem."""
    broken = moodle_zip(tmp_path / "broken.zip", {"2000001": {"repo.zip": b"PK\x03\x04 kaputt"}})
    other = moodle_zip(tmp_path / "other.zip", {"2000001": {"repo.zip": b"PK\x03\x04 anders kaputt"}})
    fixed = moodle_zip(tmp_path / "fixed.zip", {"2000001": {"repo.zip": _zip_bytes({"check.ipynb": NB})}})
    assert "1 new, 0 changed, 0 unchanged" in sandboxcheck.cli("import", "sandboxcheck", broken).stdout
    assert "0 new, 0 changed, 1 unchanged" in sandboxcheck.cli("import", "sandboxcheck", broken).stdout
    assert "0 new, 1 changed, 0 unchanged" in sandboxcheck.cli("import", "sandboxcheck", other).stdout
    result = sandboxcheck.cli("import", "sandboxcheck", fixed)
    assert "0 new, 1 changed, 0 unchanged" in result.stdout and "quarantined" not in result.stdout
    assert _quarantined(sandboxcheck)["2000001"] == ("", 1)
    assert _imported(sandboxcheck)["2000001"]["files"] == {"repo/check.ipynb": "main"}


def test_zip_bomb_stops_at_the_cap_while_copying(tmp_path):
    """The copy counts the bytes it unpacks and stops a chunk past the cap, whatever the header claims."""
    from autograder import ingest

    archive = tmp_path / "bomb.zip"
    archive.write_bytes(_zip_bytes({"bomb.bin": _mostly_zeros(50 * 1024 * 1024)}))
    with zipfile.ZipFile(archive) as zf, pytest.raises(ingest._TooLarge):
        ingest._extract(zf, zf.getinfo("bomb.bin"), tmp_path / "out.bin", 3 * 1024 * 1024)
    assert (tmp_path / "out.bin").stat().st_size <= 3 * 1024 * 1024


def test_windows_and_macos_names_inside_an_upload(sandboxcheck, tmp_path):
    """Names without the UTF-8 flag are read as their tools wrote them: CP437 (Windows), UTF-8 (macOS)."""
    inner = _zip_bytes({"check.ipynb": NB, "Lx.txt": "w", "Lxx.txt": "m"})  # ASCII: no flag; same byte lengths
    inner = inner.replace(b"Lx.txt", "Lö.txt".encode("cp437")).replace(b"Lxx.txt", "Lü.txt".encode("utf-8"))
    archive = moodle_zip(tmp_path / "m.zip", {"1000001": {"repo.zip": inner}})
    result = sandboxcheck.cli("import", "sandboxcheck", archive)
    assert result.exit_code == 0, result.output
    assert set(_imported(sandboxcheck)["1000001"]["files"]) == {"repo/check.ipynb", "repo/Lö.txt", "repo/Lü.txt"}


def test_outer_member_limit_still_rejects_the_archive(sandboxcheck, tmp_path, monkeypatch):
    """The outer archive's own limits stay all or nothing: one line, exit 4, nothing imported."""
    from autograder import ingest

    monkeypatch.setattr(ingest, "MAX_MEMBERS", 2)
    archive = moodle_zip(tmp_path / "bad.zip", {"1111111": {"check.ipynb": NB}, "2222222": {"a.txt": "a", "b.txt": "b"}})
    result = sandboxcheck.cli("import", "sandboxcheck", archive)
    assert result.exit_code == 4
    assert result.stderr.strip() == "error: bad.zip: more than the limit of 2 files"
    assert _files(sandboxcheck) == [] and _rows(sandboxcheck, "participant") == 0


# --- Bad worksheets and other bad input -----------------------------------------------------------------------


def test_cp437_member_name_is_rejected(sandboxcheck, tmp_path):
    """A name without Moodle's UTF-8 flag that is not ASCII (Windows' CP437 zip tools) is one line, exit 4."""
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("Anna_1111111_assignsubmission_file/check.ipynb", NB)
        zf.writestr("Anna_1111111_assignsubmission_file/xyz.txt", "x")
    path.write_bytes(path.read_bytes().replace(b"xyz.txt", "äöü.txt".encode("cp437")))  # same length, no flag
    result = sandboxcheck.cli("import", "sandboxcheck", path)
    assert result.exit_code == 4
    assert "is not UTF-8 (Moodle writes UTF-8 names)" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _rows(sandboxcheck, "participant") == 0


@pytest.mark.parametrize("text, message", [
    ("Name,Punkte\nAnna,3\n", "Grades.csv: missing column(s) 'Identifier', 'Status'"),
    ("Identifier|Full name|Status\nParticipant 1|A|x\n", "not a Moodle grading worksheet (no separated header line)"),
    (b"\xff\xfeI\x00d\x00", "worksheet is not UTF-8 text"),
])
def test_bad_worksheet_imports_nothing(sandboxcheck, tmp_path, text, message):
    """A worksheet without Moodle's columns, with an unknown separator or not UTF-8: one line, exit 4, nothing stored."""
    sheet = tmp_path / "Grades.csv"
    sheet.write_bytes(text if isinstance(text, bytes) else text.encode())
    archive = moodle_zip(tmp_path / "m.zip", {"1111111": {"check.ipynb": NB}})
    result = sandboxcheck.cli("import", "sandboxcheck", archive, "--worksheet", sheet)
    assert result.exit_code == 4
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _rows(sandboxcheck, "participant") == 0


def test_semicolon_worksheet_is_read(sandboxcheck, tmp_path):
    """Moodle's upload form offers ';' (German spreadsheets): such a worksheet is joined like a comma one."""
    sheet = tmp_path / "Grades.csv"
    sheet.write_text('\ufeffIdentifier;Full name;Status\n"Participant 1111111";Anna Groß;Submitted for grading\n',
                     encoding="utf-8")
    archive = moodle_zip(tmp_path / "m.zip", {"1111111": {"check.ipynb": NB}})
    assert sandboxcheck.cli("import", "sandboxcheck", archive, "--worksheet", sheet).exit_code == 0
    assert _imported(sandboxcheck)["1111111"]["name"] == "Anna Groß"


# --- Which file is which notebook -----------------------------------------------------------------------------

PAIR_CONFIG = """
[course]
name = "Zuordnung"
short_name = "ZUO"

[tasks.pair]
title = "Zwei Notebooks"

[[tasks.pair.notebooks]]
id = "one"
file = "teil1.ipynb"
title = "Teil 1"

[[tasks.pair.notebooks]]
id = "two"
file = "teil2.ipynb"
title = "Teil 2"
"""


def _nbgrader_notebook(prefix: str, answer: str = "") -> str:
    nb = nbformat.v4.new_notebook()
    for index in range(3):
        cell = nbformat.v4.new_code_cell(f"x = {index}  {answer}")
        cell.metadata["nbgrader"] = {"grade": False, "grade_id": f"{prefix}-{index}", "locked": index == 0,
                                     "schema_version": 3, "solution": index > 0, "task": False}
        nb.cells.append(cell)
    return nbformat.writes(nb)


@pytest.fixture
def pair(tmp_path):
    from conftest import make_workspace

    source = tmp_path / "assignments" / "pair" / "source"
    source.mkdir(parents=True)
    (source / "teil1.ipynb").write_text(_nbgrader_notebook("clustering"), encoding="utf-8")
    (source / "teil2.ipynb").write_text(_nbgrader_notebook("query"), encoding="utf-8")
    return make_workspace(tmp_path / "course", PAIR_CONFIG, tmp_path / "assignments")


def test_notebooks_match_by_content_not_name(pair, tmp_path):
    """Renamed notebooks are found by their nbgrader cell ids; names only break ties; checkpoints never count."""
    archive = moodle_zip(tmp_path / "m.zip", {
        "1000001": {"Aufgabe5 (1).ipynb": _nbgrader_notebook("query", "# mine"),
                    "task5_final_FINAL.ipynb": _nbgrader_notebook("clustering", "# mine"),
                    ".ipynb_checkpoints/teil1-checkpoint.ipynb": _nbgrader_notebook("clustering")},
        "1000002": {"teil1.ipynb": _nbgrader_notebook("query"), "teil2.ipynb": _nbgrader_notebook("clustering")},
        "1000003": {"teil1 (1).ipynb": _nbgrader_notebook("clustering", "# alt"),
                    "teil1.ipynb": _nbgrader_notebook("clustering", "# neu")},
        "1000004": {"teil2.ipynb": nbformat.writes(nbformat.v4.new_notebook()), "fremd.ipynb": NB},
    })
    result = pair.cli("import", "pair", archive)
    assert result.exit_code == 0, result.output
    found = _imported(pair)
    assert found["1000001"]["files"] == {"Aufgabe5 (1).ipynb": "two", "task5_final_FINAL.ipynb": "one",
                                         ".ipynb_checkpoints/teil1-checkpoint.ipynb": ""}
    assert found["1000002"]["files"] == {"teil1.ipynb": "two", "teil2.ipynb": "one"}
    assert found["1000003"]["files"] == {"teil1.ipynb": "one", "teil1 (1).ipynb": ""}
    assert found["1000004"]["files"] == {"teil2.ipynb": "two", "fremd.ipynb": ""}
    assert "1000003: no notebook matches teil2.ipynb" in result.stdout
    assert "1000004: no notebook matches teil1.ipynb" in result.stdout


@pytest.mark.sandbox
def test_no_matching_notebook_is_an_error_verdict(sandboxcheck, tmp_path):
    """A submission without any task notebook is graded 'error' with a German message (no sandbox run)."""
    archive = moodle_zip(tmp_path / "m.zip", {"1000001": {"loesung.py": "print('fertig')"}})
    result = sandboxcheck.cli("import", "sandboxcheck", archive)
    assert "1000001: no notebook matches check.ipynb" in result.stdout
    assert sandboxcheck.cli("grade", "sandboxcheck").exit_code == 0
    row = sandboxcheck.status("sandboxcheck")["1000001"]
    assert row["verdict"] == "error"
    assert [(c["id"], c["state"], c["message"]) for c in row["criteria"]] == [
        ("main.submitted", "fail", "Das Notebook „check.ipynb“ wurde in der Abgabe nicht gefunden.")]
    with sqlite3.connect(sandboxcheck.root / "grader.db") as db:
        [(problem,)] = db.execute("SELECT problem FROM submission").fetchall()
    assert problem == "Kein hochgeladenes Notebook passt zu „check.ipynb“ (hochgeladen: loesung.py)."


def test_corrupt_member_data_imports_nothing(sandboxcheck, tmp_path):
    """A member whose bytes do not match its CRC (damaged download) is one line naming it, exit 4."""
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("Anna Berg_1111111_assignsubmission_file/check.ipynb", NB)
        zf.writestr("Eve Evil_2222222_assignsubmission_file/notes.txt", "unversehrt")
    path.write_bytes(path.read_bytes().replace(b"unversehrt", b"beschaedig"))
    result = sandboxcheck.cli("import", "sandboxcheck", path)
    assert result.exit_code == 4
    assert result.stderr.strip() == ("error: bad.zip: member 'Eve Evil_2222222_assignsubmission_file/notes.txt' is "
                                      "corrupt (Bad CRC-32 for file 'Eve Evil_2222222_assignsubmission_file/notes.txt')")
    assert _files(sandboxcheck) == [] and _rows(sandboxcheck, "participant") == 0


def test_two_groups_with_one_name_are_rejected(sandboxcheck, tmp_path):
    """Members are found by group name; if two group folders share it, the import stops with one line."""
    archive = _raw_zip(tmp_path / "m.zip", {"Team A_42_assignsubmission_file/check.ipynb": NB,
                                            "Team A_43_assignsubmission_file/check.ipynb": NB})
    sheet = _worksheet(tmp_path / "Grades.csv", TEAM_HEADER, [_team_row("1000001", "Ann A", "Team A")])
    result = sandboxcheck.cli("import", "sandboxcheck", archive, "--worksheet", sheet)
    assert result.exit_code == 4
    assert result.stderr.strip() == ("error: groups 42 and 43 both have the name of participant 1000001's group in "
                                      "the worksheet; give the groups distinct names in Moodle")
    assert _rows(sandboxcheck, "participant") == 0
