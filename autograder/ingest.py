"""Ingest: take a Moodle "Download all submissions" ZIP into submissions/TASK/ and the database.

Only the outer archive is all or nothing: a ZIP that cannot be read, is not in Moodle's layout, or holds a
member Moodle never writes (an absolute or ".." path, a symbolic link, encryption, a non-UTF-8 name, an
unusual compression method, data that fails its CRC) rejects the whole import with one line, storing nothing.
A participant whose own upload is unusable (a ZIP they uploaded that is corrupt, encrypted or a ZIP bomb, a
symbolic link or an escaping or invalid name inside it, more than one upload may hold) is quarantined instead:
imported without files and with a German `Submission.problem`, so grading gives `error`, while everyone else
is imported as usual; the report names the quarantined participants.

Uploads are streamed into a staging folder next to their final place, each copy capped while it is counted
(a ZIP header's sizes are the sender's claim, the bytes are the truth), so a ZIP bomb stops at the cap and no
upload is held in memory. Files are stored per version (`submissions/TASK/<participant>/<content hash>/`),
then one transaction records the import; an interrupted import leaves at most unreferenced folders, which
the next import reuses.

A `.zip` a student uploaded is unpacked (one level deep) into a folder named after it. Uploaded notebooks
are matched to the task's notebooks by the nbgrader cell ids of the task's source notebooks (the released
ones keep them), the file name only breaking ties. With the worksheet, uploads are joined on participant id:
drafts are marked, and team uploads (group id folders, "Default group") get their members from the
worksheet's Group column.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import lzma
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autograder.config import Config, TaskConfig
from autograder.errors import ArchiveError
from autograder.models import ImportBatch, Participant, Submission, SubmittedFile
from autograder.moodle import (
    DEFAULT_GROUP_ID, SUBMISSION_PLUGIN, Entry, Worksheet, parse_entry, participant_number, prefix_label,
    read_worksheet,
)

MAX_MEMBERS = 20_000  # files in the outer archive
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024  # everything one import stores
MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # one participant's files, unpacked; and any one ZIP they uploaded
MAX_UPLOAD_FILES = 10_000  # one participant's files, unpacked
# The table of contents of a student's ZIP is parsed into memory by zipfile; a legitimate one of
# MAX_UPLOAD_FILES entries needs about 2 MB.
MAX_CENTRAL_DIRECTORY_BYTES = 8 * 1024 * 1024
MAX_NAME_BYTES = 255  # one path component (the file system's own limit)
MAX_PATH_BYTES = 1024
_CHUNK = 1 << 20
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
# zipfile decompresses bzip2 and LZMA without an output bound per read, so a small bomb could fill memory
# before any cap is counted; Moodle and every common ZIP tool write stored or deflated members.
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, ValueError, zlib.error,
                lzma.LZMAError)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class UploadedFile:
    path: str  # inside the participant's submission, POSIX, NFC
    sha256: str
    size: int


@dataclass
class Upload:
    """Everything one participant (or team) uploaded, as found in the ZIP and staged on disk."""

    moodle_id: str
    label: str
    files: list[UploadedFile] = field(default_factory=list)
    problem: str = ""  # German, for the student: why the upload is quarantined (it then has no files)
    detail: str = ""  # the same for staff, in English
    listing: str = ""  # the outer members as Moodle listed them (names, CRCs, sizes)

    def content_sha256(self) -> str:
        digest = hashlib.sha256()
        if self.problem:  # no files: another broken upload must still be another version
            digest.update(f"quarantined\0{self.problem}\0{self.listing}\n".encode())
        for f in sorted(self.files, key=lambda f: f.path):
            digest.update(f"{f.path}\0{f.sha256}\n".encode())
        return digest.hexdigest()


@dataclass
class ImportReport:
    task: str
    archive: str
    participants: int = 0
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # participant id -> what staff should know (English)
    quarantined: list[str] = field(default_factory=list)  # imported without files; graded `error`
    drafts: list[str] = field(default_factory=list)
    teams: dict[str, list[str]] = field(default_factory=dict)  # group id -> member participant ids


def import_submissions(
    config: Config, task: TaskConfig, archive: Path, engine: Engine, worksheet: Path | None = None
) -> ImportReport:
    """Import a Moodle submissions ZIP for `task`.

    Raises ArchiveError, importing nothing, when the archive or the worksheet is bad; a participant whose own
    upload is unusable is imported quarantined (no files, a German problem) and listed in the report.
    """
    sheet = read_worksheet(worksheet) if worksheet else None
    root = config.path(config.paths.submissions) / task.id
    _make_folder(root)
    with tempfile.TemporaryDirectory(prefix=".import-", dir=root) as staging:
        uploads = read_moodle_zip(archive, Path(staging))
        owners = _owners(uploads, sheet, config)
        # files first: a crash before the commit only leaves reusable folders
        folders = {upload.moodle_id: _store_files(root, Path(staging), upload) for upload in uploads}
    expected = expected_cell_ids(config, task)
    report = ImportReport(task=task.id, archive=archive.name, participants=len(uploads))
    with Session(engine) as session:
        batch = ImportBatch(task=task.id, archive_name=archive.name, archive_sha256=_file_sha256(archive),
                            participants=len(uploads))
        session.add(batch)
        session.flush()
        for upload in uploads:
            folder = folders[upload.moodle_id]
            matches = match_notebooks(task, expected, folder, upload.files, config.sandbox.max_notebook_mb)
            _import_upload(session, root, batch, task, upload, owners[upload.moodle_id], matches, report)
        batch.new_submissions = len(report.new) + len(report.changed)
        session.commit()
    return report


def _import_upload(session: Session, root: Path, batch: ImportBatch, task: TaskConfig, upload: Upload,
                   owner: "_Owner", matches: dict[str, str], report: ImportReport) -> None:
    participant = _participant(session, task.id, upload, owner)
    problem = upload.problem or _missing_message(task, matches, upload)
    outcome = _record_submission(session, root, batch, participant, upload, owner.status, matches, problem)
    getattr(report, outcome).append(upload.moodle_id)
    if owner.status == "draft":
        report.drafts.append(upload.moodle_id)
    if owner.members:
        report.teams[upload.moodle_id] = [pid for pid, _ in owner.members]
    missing = [nb.file for nb in task.notebooks if nb.id not in matches.values()]
    if upload.problem:
        report.quarantined.append(upload.moodle_id)
        report.problems[upload.moodle_id] = f"quarantined: {upload.detail}"
    elif missing:
        report.problems[upload.moodle_id] = "no notebook matches " + ", ".join(missing)


def _file_sha256(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot be read ({exc.strerror})") from None


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"{folder}: cannot create the folder ({exc.strerror})") from None


# --- The outer archive: Moodle's, all or nothing --------------------------------------------------------------


def read_moodle_zip(archive: Path, staging: Path) -> list[Upload]:
    """Check the outer archive, then stream each participant's upload into `staging/<participant id>/`.

    Raises ArchiveError naming the first problem of the archive itself; a participant whose own upload is
    unusable comes back quarantined (`problem` and `detail` set, no files).
    """
    with _open_archive(archive) as zf:
        members = [info for info in zf.infolist() if not info.is_dir()]
        if not members:
            raise ArchiveError(f"{archive.name}: the archive is empty")
        if len(members) > MAX_MEMBERS:
            raise ArchiveError(f"{archive.name}: more than the limit of {MAX_MEMBERS} files")
        for info in members:
            _check_outer_member(archive.name, info)
        uploads, stored = [], 0
        for moodle_id, items in _by_participant(archive.name, members).items():
            upload = _read_upload(archive.name, zf, moodle_id, items, staging)
            stored += sum(f.size for f in upload.files)
            if stored > MAX_TOTAL_BYTES:
                raise ArchiveError(f"{archive.name}: unpacks to more than {MAX_TOTAL_BYTES} bytes")
            uploads.append(upload)
    return sorted(uploads, key=lambda u: int(u.moodle_id))


def _open_archive(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise ArchiveError(f"{archive}: file not found") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"{archive.name}: not a readable ZIP archive ({exc})") from None


def _check_outer_member(archive: str, info: zipfile.ZipInfo) -> None:
    """What Moodle never writes: such a member means the archive itself is damaged or not Moodle's."""
    name = info.filename
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise ArchiveError(f"{archive}: member {name!r} is encrypted")
    if not info.flag_bits & _UTF8_FLAG and not name.isascii():
        raise ArchiveError(f"{archive}: member name {name!r} is not UTF-8 (Moodle writes UTF-8 names)")
    fault = _path_fault(name)
    if fault:
        raise ArchiveError(f"{archive}: member {name!r} {fault}")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveError(f"{archive}: member {name!r} is a symbolic link")
    if info.compress_type not in _METHODS:
        raise ArchiveError(f"{archive}: member {name!r} uses compression method {info.compress_type} "
                           "(Moodle writes stored or deflated members)")


def _path_fault(name: str) -> str:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if ".." in parts:
        return "leaves the archive folder ('..')"
    return ""


def _by_participant(archive: str, members: list[zipfile.ZipInfo]) -> dict[str, list[tuple[zipfile.ZipInfo, Entry]]]:
    """The participants' members in Moodle's naming scheme (else ArchiveError); feedback files left out."""
    entries = [(info, parse_entry(_nfc(info.filename))) for info in members]
    strangers = [info.filename for info, entry in entries if entry is None]
    if strangers:
        if len(strangers) == len(entries):
            raise ArchiveError(
                f"{archive}: not a Moodle submissions download (e.g. {strangers[0]!r} does not name a "
                f"participant as 'Name_1234567_assignsubmission_file/...')"
            )
        raise ArchiveError(f"{archive}: member {strangers[0]!r} is not in Moodle's naming scheme")
    grouped: dict[str, list[tuple[zipfile.ZipInfo, Entry]]] = {}
    for info, entry in entries:
        assert entry is not None
        if entry.moodle_id is None:
            raise ArchiveError(f"{archive}: member {info.filename!r} names no participant id")
        if entry.plugin.startswith(SUBMISSION_PLUGIN):  # feedback files of an earlier round are the staff's
            grouped.setdefault(entry.moodle_id, []).append((info, entry))
    for moodle_id, items in grouped.items():
        twice = [path for path, n in Counter(_nfc(entry.path) for _, entry in items).items() if n > 1]
        if twice:
            raise ArchiveError(f"{archive}: participant {moodle_id}: two files are named {twice[0]!r} "
                               "(flat download? use 'Download submissions in folders')")
    return grouped


# --- One participant's upload: theirs alone, quarantined when unusable ------------------------------------------


class _Unusable(Exception):
    """A participant's own upload cannot be imported: the participant is quarantined, the import goes on."""

    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem  # German, for the student
        self.detail = detail  # English, for staff


class _Corrupt(Exception):
    """A member's data cannot be read (bad CRC, broken deflate stream, truncated)."""


class _TooLarge(Exception):
    """A member streamed past the bytes left for it."""


_PROBLEMS = {
    "corrupt": "Ihre ZIP-Datei „{zip}“ ist beschädigt und konnte nicht entpackt werden. Bitte laden Sie sie erneut hoch.",
    "method": "Ihre ZIP-Datei „{zip}“ ist mit einem Verfahren komprimiert, das nicht entpackt werden kann. Bitte "
              "erstellen Sie sie mit der üblichen Einstellung („Deflate“) neu und laden Sie sie erneut hoch.",
    "encrypted": "Ihre ZIP-Datei „{zip}“ ist verschlüsselt (mit einem Passwort geschützt) und kann nicht entpackt "
                 "werden. Bitte laden Sie sie ohne Passwort erneut hoch.",
    "symlink": "Ihre Abgabe enthält eine symbolische Verknüpfung („{name}“). Bitte laden Sie statt der Verknüpfung "
               "die Datei selbst hoch.",
    "escape": "Ihre ZIP-Datei „{zip}“ enthält einen Pfad, der aus dem Ordner der Abgabe hinausführt („{name}“). "
              "Bitte packen Sie nur den Ordner Ihrer Abgabe und laden Sie die ZIP-Datei erneut hoch.",
    "name": "Ihre Abgabe enthält einen ungültigen Dateinamen („{name}“). Bitte benennen Sie die Datei um (ohne "
            "Steuerzeichen, nicht zu lang) und laden Sie die Abgabe erneut hoch.",
    "clash": "Ihre Abgabe enthält „{name}“ doppelt oder zugleich als Datei und als Ordner und kann so nicht "
             "gespeichert werden. Bitte laden Sie sie ohne diese Doppelung erneut hoch.",
    "too_large": "Ihre Abgabe ist entpackt zu groß (mehr als {mb} MB) und wurde nicht angenommen. Bitte laden Sie "
                 "nur die für die Aufgabe nötigen Dateien hoch.",
    "too_many": "Ihre Abgabe enthält zu viele Dateien (mehr als {count}). Bitte laden Sie nur die für die Aufgabe "
                "nötigen Dateien hoch.",
}


def _unusable(kind: str, detail: str, zip: str = "", name: str = "") -> _Unusable:
    problem = _PROBLEMS[kind].format(zip=_shown(zip), name=_shown(name), mb=MAX_UPLOAD_BYTES // (1024 * 1024),
                                     count=MAX_UPLOAD_FILES)
    return _Unusable(problem, detail)


def _shown(name: str) -> str:
    """A student's file name as a message may quote it: no control characters, not endless."""
    name = _CONTROL.sub("?", name)
    return name if len(name) <= 80 else name[:79] + "…"


def _read_upload(archive: str, zf: zipfile.ZipFile, moodle_id: str, items: list[tuple[zipfile.ZipInfo, Entry]],
                 staging: Path) -> Upload:
    """One participant's files into `staging/<id>/`; an unusable upload of theirs quarantines them, without files."""
    listing = "\n".join(sorted(f"{info.filename}\0{info.CRC:08x}\0{info.file_size}" for info, _ in items))
    upload = Upload(moodle_id=moodle_id, label=items[0][1].label, listing=listing)
    staged = _Staging(staging / moodle_id)
    try:
        for info, entry in items:
            path = _nfc(entry.path)
            if path.casefold().endswith(".zip") and entry.plugin == "assignsubmission_file":
                _unpack_uploaded_zip(archive, zf, info, path, staged, staging / ".spool")
            else:
                _copy_outer(archive, zf, info, _valid_path(path, path), staged)
    except _Unusable as unusable:
        shutil.rmtree(staged.folder, ignore_errors=True)
        upload.problem, upload.detail = unusable.problem, unusable.detail
        return upload
    upload.files = staged.files
    return upload


def _copy_outer(archive: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, staged: "_Staging") -> None:
    try:
        staged.add(zf, info, path)
    except _Corrupt as exc:  # Moodle wrote these bytes: a damaged download, not the student's doing
        raise ArchiveError(f"{archive}: member {info.filename!r} is corrupt ({exc})") from None


def _unpack_uploaded_zip(archive: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str,
                         staged: "_Staging", spool_folder: Path) -> None:
    """A ZIP the student uploaded: spooled to disk, then its files streamed into a folder named after it.

    One level deep: a ZIP inside it stays a file. `.git/` and other hidden folders are kept as they are.
    """
    _make_folder(spool_folder)
    spool = spool_folder / "upload.zip"
    try:
        try:
            _extract(zf, info, spool, MAX_UPLOAD_BYTES)
        except _Corrupt as exc:
            raise ArchiveError(f"{archive}: member {info.filename!r} is corrupt ({exc})") from None
        except _TooLarge:
            raise _unusable("too_large", f"{path}: more than {MAX_UPLOAD_BYTES} bytes") from None
        folder = path[: -len(".zip")]
        with _open_uploaded_zip(path, spool) as inner:
            for member in inner.infolist():
                if member.is_dir():
                    continue
                try:
                    staged.add(inner, member, f"{folder}/{_inner_path(path, member)}")
                except _Corrupt as exc:
                    raise _unusable("corrupt", f"{path}: member {member.filename!r} is corrupt ({exc})",
                                    zip=path) from None
    finally:
        spool.unlink(missing_ok=True)


def _open_uploaded_zip(path: str, spool: Path) -> zipfile.ZipFile:
    try:
        with spool.open("rb") as stream:
            end = zipfile._EndRecData(stream)  # what ZipFile itself reads first (zip64 included)
        if end is not None and end[zipfile._ECD_SIZE] > MAX_CENTRAL_DIRECTORY_BYTES:
            raise _unusable("too_many", f"{path}: its table of contents has {end[zipfile._ECD_SIZE]} bytes "
                                        f"(limit {MAX_CENTRAL_DIRECTORY_BYTES})")
        return zipfile.ZipFile(spool)
    except _READ_ERRORS as exc:
        raise _unusable("corrupt", f"{path}: not a readable ZIP archive ({exc})", zip=path) from None


def _inner_path(zip_path: str, info: zipfile.ZipInfo) -> str:
    """Where a member of a student's ZIP goes inside its folder; _Unusable if it may not be unpacked."""
    name = _member_name(info)
    where = f"{zip_path}: member {name!r}"
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise _unusable("encrypted", f"{where} is encrypted", zip=zip_path)
    fault = _path_fault(name)
    if fault:
        raise _unusable("escape", f"{where} {fault}", zip=zip_path, name=name)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise _unusable("symlink", f"{where} is a symbolic link", name=name)
    if info.compress_type not in _METHODS:
        raise _unusable("method", f"{where} uses compression method {info.compress_type}", zip=zip_path)
    return _valid_path(name, where)


def _member_name(info: zipfile.ZipInfo) -> str:
    """A name as its maker meant it. Without the UTF-8 flag zipfile reads CP437 (right for Windows' own ZIP
    tool, umlauts included), but macOS writes UTF-8 without setting the flag."""
    name = info.filename
    if not info.flag_bits & _UTF8_FLAG and not name.isascii():
        try:
            name = name.encode("cp437").decode("utf-8")
        except UnicodeError:
            pass
    return _nfc(name.replace("\\", "/"))


def _valid_path(name: str, where: str) -> str:
    """`name` as a relative POSIX path every file system here can store, or _Unusable."""
    parts = PurePosixPath(name).parts
    if (not parts or len(name.encode()) > MAX_PATH_BYTES
            or any(_CONTROL.search(part) or len(part.encode()) > MAX_NAME_BYTES for part in parts)):
        raise _unusable("name", f"{where}: not a valid file name", name=name)
    return "/".join(parts)


@dataclass
class _Staging:
    """One participant's files as they are streamed to disk, within the limits of one upload."""

    folder: Path
    files: list[UploadedFile] = field(default_factory=list)
    size: int = 0
    _paths: set[str] = field(default_factory=set)
    _folders: set[str] = field(default_factory=set)

    def add(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> None:
        """Stream one member to `path`: _Unusable past the upload's limits, _Corrupt if its data is bad."""
        self._claim(path, info)
        try:
            size, sha256 = _extract(zf, info, self.folder / path, MAX_UPLOAD_BYTES - self.size)
        except _TooLarge:
            raise _unusable("too_large", f"{path}: the upload unpacks past {MAX_UPLOAD_BYTES} bytes "
                                         "(ZIP bomb?)") from None
        self.size += size
        self.files.append(UploadedFile(path=path, sha256=sha256, size=size))

    def _claim(self, path: str, info: zipfile.ZipInfo) -> None:
        if len(self.files) >= MAX_UPLOAD_FILES:
            raise _unusable("too_many", f"{path}: more than {MAX_UPLOAD_FILES} files")
        parents = [str(parent) for parent in PurePosixPath(path).parents][:-1]  # without "."
        if path in self._paths or path in self._folders or any(p in self._paths for p in parents):
            raise _unusable("clash", f"{path!r} is there twice, or both a file and a folder", name=path)
        if info.file_size > MAX_UPLOAD_BYTES - self.size:  # the header's claim alone is enough to refuse
            raise _unusable("too_large", f"{path}: unpacks to {info.file_size} bytes, past the limit of "
                                         f"{MAX_UPLOAD_BYTES} for one upload")
        self._paths.add(path)
        self._folders.update(parents)


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> tuple[int, str]:
    """Stream one member into a new file, hashing it; _TooLarge past `limit` bytes, whatever its header says."""
    try:
        stream = zf.open(info)
    except NotImplementedError as exc:
        raise _Corrupt(f"cannot be unpacked: {exc}") from None
    except _READ_ERRORS as exc:
        raise _Corrupt(str(exc)) from None
    source = _CappedReader(stream, limit)
    with stream:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("xb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
        except OSError as exc:  # only the writing side: reading errors are _Corrupt (disk full, permissions)
            raise ArchiveError(f"cannot store {target} ({exc.strerror})") from None
    return source.size, source.digest.hexdigest()


class _CappedReader:
    """A member's stream for shutil.copyfileobj that counts and hashes what it hands on, and stops at `limit`."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream, self._limit = stream, limit
        self.size, self.digest = 0, hashlib.sha256()

    def read(self, size: int = _CHUNK) -> bytes:
        try:  # deflate hands out at most `size` bytes per read, so a bomb is stopped a chunk past the limit
            chunk = self._stream.read(size if 0 < size <= _CHUNK else _CHUNK)
        except _READ_ERRORS as exc:
            raise _Corrupt(str(exc)) from None
        self.size += len(chunk)
        if self.size > self._limit:
            raise _TooLarge
        self.digest.update(chunk)
        return chunk


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _store_files(root: Path, staging: Path, upload: Upload) -> Path:
    """Move a participant's staged files to their version's folder, unless that version is stored already."""
    folder = root / upload.moodle_id / upload.content_sha256()[:16]
    if folder.is_dir():
        return folder
    staged = staging / upload.moodle_id
    _make_folder(staged)  # a quarantined upload's folder stays empty
    _make_folder(folder.parent)
    try:
        staged.replace(folder)
    except OSError as exc:
        if not folder.is_dir():  # else another import stored the same version meanwhile
            raise ArchiveError(f"participant {upload.moodle_id}: cannot store the files ({exc.strerror})") from None
    return folder


@dataclass(frozen=True)
class _Owner:
    """Who an upload belongs to, after the join with the worksheet."""

    name: str
    email: str = ""
    status: str = "submitted"  # submitted | draft
    members: tuple[tuple[str, str], ...] = ()  # team submissions: (participant id, full name)


@dataclass(frozen=True)
class _Row:
    name: str
    email: str
    status: str
    group: str


def _participant(session: Session, task: str, upload: Upload, owner: _Owner) -> Participant:
    participant = session.exec(
        select(Participant).where(Participant.task == task, Participant.moodle_id == upload.moodle_id)
    ).first()
    if participant is None:
        participant = Participant(task=task, moodle_id=upload.moodle_id, name=owner.name, email=owner.email)
    else:
        participant.name, participant.email = owner.name, owner.email or participant.email
    if owner.members:
        participant.is_team = True
        participant.members = "\n".join(f"{pid}:{name}" for pid, name in owner.members)
    session.add(participant)
    session.flush()
    return participant


def _record_submission(
    session: Session, root: Path, batch: ImportBatch, participant: Participant, upload: Upload, status: str,
    matches: dict[str, str], problem: str,
) -> str:
    content = upload.content_sha256()
    current = session.exec(
        select(Submission).where(Submission.participant_id == participant.id, Submission.current == True)  # noqa: E712
    ).first()
    if current is not None and current.content_sha256 == content:
        current.status = status
        session.add(current)
        return "unchanged"
    if current is not None:
        current.current = False
        session.add(current)
    folder = (root / upload.moodle_id / content[:16]).relative_to(root.parent)
    submission = Submission(participant_id=participant.id, batch_id=batch.id, content_sha256=content,
                            folder=str(folder), status=status, problem=problem)
    session.add(submission)
    session.flush()
    for f in upload.files:
        session.add(SubmittedFile(submission_id=submission.id, path=f.path, original_name=PurePosixPath(f.path).name,
                                  sha256=f.sha256, size=f.size, notebook_id=matches.get(f.path, "")))
    return "new" if current is None else "changed"


# --- Which uploaded notebook is which task notebook ---------------------------------------------------------


def expected_cell_ids(config: Config, task: TaskConfig) -> dict[str, frozenset[str]]:
    """notebook id -> the nbgrader grade_ids of its source notebook (kept by the released notebook)."""
    expected = {}
    for notebook in task.notebooks:
        source = config.task_dir(task.id) / "source" / notebook.file
        expected[notebook.id] = _cell_ids(source.read_bytes()) if source.is_file() else frozenset()
    return expected


def _cell_ids(data: bytes) -> frozenset[str]:
    try:
        cells = json.loads(data).get("cells", [])
        return frozenset(
            cell["metadata"]["nbgrader"]["grade_id"] for cell in cells
            if isinstance(cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"), str)
        )
    except (ValueError, AttributeError, TypeError, KeyError, RecursionError):
        return frozenset()


def match_notebooks(task: TaskConfig, expected: dict[str, frozenset[str]], folder: Path,
                    files: list[UploadedFile], max_mb: int) -> dict[str, str]:
    """Uploaded path -> task notebook id, by shared nbgrader cell ids; the file name only breaks ties.

    A notebook without nbgrader metadata can still match by its exact file name, and a task of one notebook
    takes the only uploaded notebook. Hidden folders (.ipynb_checkpoints, .git) are never candidates.
    """
    candidates = [f for f in files if f.path.casefold().endswith(".ipynb") and not _hidden(f.path)]
    cell_ids = {f.path: _cell_ids((folder / f.path).read_bytes()) if f.size <= max_mb * 1024 * 1024 else frozenset()
                for f in candidates}
    ranked = []
    for notebook in task.notebooks:
        wanted = expected.get(notebook.id, frozenset())
        for f in candidates:
            share = len(wanted & cell_ids[f.path]) / len(wanted) if wanted else 0.0
            name = PurePosixPath(f.path).name
            same_name = name.casefold() == notebook.file.casefold()
            if share > 0 or same_name:
                likeness = difflib.SequenceMatcher(None, name.casefold(), notebook.file.casefold()).ratio()
                ranked.append(((-share, not same_name, -likeness, f.path.count("/"), f.path), notebook.id, f.path))
    matches: dict[str, str] = {}
    for _, notebook_id, path in sorted(ranked):
        if path not in matches and notebook_id not in matches.values():
            matches[path] = notebook_id
    if not matches and len(task.notebooks) == 1 and len(candidates) == 1:
        matches[candidates[0].path] = task.notebooks[0].id
    return matches


def _hidden(path: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(path).parts)


def _missing_message(task: TaskConfig, matches: dict[str, str], upload: Upload) -> str:
    """German, for the staff view of a submission: which task notebooks were not found and what was there."""
    missing = [nb.file for nb in task.notebooks if nb.id not in matches.values()]
    if not missing:
        return ""
    uploaded = ", ".join(sorted(f.path for f in upload.files)[:10]) or "keine Dateien"
    return (f"Kein hochgeladenes Notebook passt zu {', '.join(f'„{m}“' for m in missing)} "
            f"(hochgeladen: {uploaded}).")


# --- The worksheet: names, e-mails, drafts, teams -----------------------------------------------------------


def _worksheet_rows(sheet: Worksheet, config: Config) -> dict[str, _Row]:
    """participant id -> what the worksheet says about them."""
    headers = config.moodle
    sheet.require(headers.identifier_header, headers.status_header)
    rows = {}
    for row in sheet.rows:
        number = participant_number(sheet.get(row, headers.identifier_header), headers.participant_prefix)
        if number is None:
            continue
        is_draft = headers.draft_status.casefold() in sheet.get(row, headers.status_header).casefold()
        rows[number] = _Row(sheet.get(row, headers.fullname_header), sheet.get(row, headers.email_header),
                            "draft" if is_draft else "submitted", sheet.get(row, headers.group_header).strip())
    return rows


def _owners(uploads: list[Upload], sheet: Worksheet | None, config: Config) -> dict[str, _Owner]:
    """Each upload's owner; two team folders claiming the same members (same group name) are an error."""
    rows = _worksheet_rows(sheet, config) if sheet else {}
    team_mode = sheet is not None and sheet.column(config.moodle.group_header) is not None
    owners = {u.moodle_id: _owner(u, rows, team_mode, config) for u in uploads}
    claimed: dict[str, str] = {}
    for moodle_id, owner in owners.items():
        for pid, _ in owner.members:
            if claimed.setdefault(pid, moodle_id) != moodle_id:
                raise ArchiveError(f"groups {claimed[pid]} and {moodle_id} both have the name of participant {pid}'s "
                                   "group in the worksheet; give the groups distinct names in Moodle")
    return owners


def _owner(upload: Upload, rows: dict[str, _Row], team_mode: bool, config: Config) -> _Owner:
    """Join an upload to the worksheet: a participant's own row, or (team submissions) its group's members."""
    members = _team_members(upload, rows, config) if team_mode else ()
    if members:
        drafts = all(rows[pid].status == "draft" for pid, _ in members)
        return _Owner(upload.label, status="draft" if drafts else "submitted", members=members)
    row = rows.get(upload.moodle_id)
    if row is None:
        return _Owner(upload.label)
    return _Owner(row.name or upload.label, row.email, row.status)


def _team_members(upload: Upload, rows: dict[str, _Row], config: Config) -> tuple[tuple[str, str], ...]:
    """Members of the group an upload names: worksheet rows whose Group is the folder's group name."""
    default = upload.moodle_id == DEFAULT_GROUP_ID
    wanted = prefix_label(upload.label).casefold()
    members = tuple(
        (pid, row.name) for pid, row in sorted(rows.items())
        if (default and row.group in ("", config.moodle.default_group))
        or (not default and row.group and prefix_label(row.group).casefold() == wanted)
    )
    return members


def submission_files(config: Config, submission: Submission) -> Path:
    """The folder holding a submission's files."""
    return config.path(config.paths.submissions) / submission.folder


__all__ = ["ImportReport", "Upload", "import_submissions", "read_moodle_zip", "submission_files"]
