"""grader import: a Moodle ZIP goes in whole, or not at all, with one line saying why."""

from __future__ import annotations

import sqlite3
import stat
import zipfile

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
    with zipfile.ZipFile(path, "w", compress) as zf:
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
    (lambda t: _zip_with(t, "Eve Evil_2222222_assignsubmission_file/bomb.ipynb", b"\0" * (300 * 1024 * 1024)),
     "member 'Eve Evil_2222222_assignsubmission_file/bomb.ipynb' unpacks to 314572800 bytes (limit 209715200)"),
    (lambda t: _zip_with(t, "Eve Evil_2222222_assignsubmission_file/ratio.ipynb", b"\0" * (50 * 1024 * 1024)),
     "member 'Eve Evil_2222222_assignsubmission_file/ratio.ipynb' is compressed 1028:1 (ZIP bomb?)"),
    (lambda t: _zip_with(t, "Eve Evil_2222222_assignsubmission_file/secret.ipynb", flag=0x1),
     "member 'Eve Evil_2222222_assignsubmission_file/secret.ipynb' is encrypted"),
    (lambda t: _zip_with(t, "notes/readme.txt"), "member 'notes/readme.txt' is not in Moodle's naming scheme"),
    (lambda t: _zip_with(t, "notes/readme.txt", good=False),
     "not a Moodle submissions download (e.g. 'notes/readme.txt' does not name a participant as "
     "'Name_1234567_assignsubmission_file/...')"),
])
def test_bad_archive_imports_nothing(sandboxcheck, tmp_path, build, message):
    """One unsafe or foreign member rejects the whole ZIP: one line, exit 4, no files, no rows."""
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
