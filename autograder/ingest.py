"""Ingest: take a Moodle "Download all submissions" ZIP into submissions/TASK/ and the database, all or nothing.

Every member is checked before anything is written (absolute paths, "..", symlinks, encryption, non-UTF-8
names, sizes that betray a ZIP bomb), so one bad member rejects the whole archive with one line. Files are
stored per version (`submissions/TASK/<participant>/<content hash>/`), then one transaction records the
import; an interrupted import leaves at most unreferenced folders, which the next import reuses.
"""

from __future__ import annotations

import hashlib
import os
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autograder.config import Config, TaskConfig
from autograder.errors import ArchiveError
from autograder.models import ImportBatch, Participant, Submission, SubmittedFile
from autograder.moodle import Entry, Worksheet, parse_entry, participant_number, read_worksheet

MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 200 * 1024 * 1024
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
MAX_RATIO = 200  # uncompressed/compressed; text compresses ~10x, a bomb 1000x
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1


@dataclass
class UploadedFile:
    path: str  # inside the participant's submission, POSIX, NFC
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Upload:
    """Everything one participant (or team) uploaded, as found in the ZIP."""

    moodle_id: str
    label: str
    files: list[UploadedFile] = field(default_factory=list)

    def content_sha256(self) -> str:
        digest = hashlib.sha256()
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
    problems: dict[str, str] = field(default_factory=dict)
    drafts: list[str] = field(default_factory=list)


def import_submissions(
    config: Config, task: TaskConfig, archive: Path, engine: Engine, worksheet: Path | None = None
) -> ImportReport:
    """Import a Moodle submissions ZIP for `task`; raise ArchiveError (importing nothing) on any bad input."""
    uploads = read_moodle_zip(archive)
    sheet = read_worksheet(worksheet) if worksheet else None
    details = _worksheet_details(sheet, config) if sheet else {}
    archive_sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = config.path(config.paths.submissions) / task.id
    report = ImportReport(task=task.id, archive=archive.name, participants=len(uploads))
    for upload in uploads:  # files first: a crash before the commit only leaves reusable folders
        _store_files(root, upload)
    with Session(engine) as session:
        batch = ImportBatch(task=task.id, archive_name=archive.name, archive_sha256=archive_sha,
                            participants=len(uploads))
        session.add(batch)
        session.flush()
        for upload in uploads:
            name, email, status = details.get(upload.moodle_id, (upload.label, "", "submitted"))
            participant = _participant(session, task.id, upload, name, email)
            outcome = _record_submission(session, root, task, batch, participant, upload, status)
            getattr(report, outcome).append(upload.moodle_id)
            if status == "draft":
                report.drafts.append(upload.moodle_id)
            matched = {f.notebook_id for f in _matched_files(task, upload)}
            missing = [nb.file for nb in task.notebooks if nb.id not in matched]
            if missing:
                report.problems[upload.moodle_id] = "missing " + ", ".join(missing)
        batch.new_submissions = len(report.new) + len(report.changed)
        session.commit()
    return report


def read_moodle_zip(archive: Path) -> list[Upload]:
    """Check every member, then read the uploads; raises ArchiveError naming the first problem."""
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise ArchiveError(f"{archive}: file not found") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(f"{archive.name}: not a readable ZIP archive ({exc})") from None
    with zf:
        members = [info for info in zf.infolist() if not info.is_dir()]
        if not members:
            raise ArchiveError(f"{archive.name}: the archive is empty")
        if len(members) > MAX_MEMBERS:
            raise ArchiveError(f"{archive.name}: {len(members)} files, more than the limit of {MAX_MEMBERS}")
        declared = 0
        for info in members:
            _check_member(archive.name, info)
            declared += info.file_size
        if declared > MAX_TOTAL_BYTES:
            raise ArchiveError(f"{archive.name}: unpacks to {declared} bytes, more than {MAX_TOTAL_BYTES} (ZIP bomb?)")
        entries = [(info, parse_entry(_nfc(info.filename))) for info in members]
        strangers = [info.filename for info, entry in entries if entry is None]
        if strangers:
            if len(strangers) == len(entries):
                raise ArchiveError(
                    f"{archive.name}: not a Moodle submissions download (e.g. {strangers[0]!r} does not name a "
                    f"participant as 'Name_1234567_assignsubmission_file/...')"
                )
            raise ArchiveError(f"{archive.name}: member {strangers[0]!r} is not in Moodle's naming scheme")
        return _group_uploads(archive.name, zf, entries)


def _check_member(archive: str, info: zipfile.ZipInfo) -> None:
    name = info.filename
    if info.flag_bits & _ENCRYPTED_FLAG:
        raise ArchiveError(f"{archive}: member {name!r} is encrypted")
    if not info.flag_bits & _UTF8_FLAG and not name.isascii():
        raise ArchiveError(f"{archive}: member name {name!r} is not UTF-8 (Moodle writes UTF-8 names)")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in parts:
        raise ArchiveError(f"{archive}: member {name!r} leaves the archive folder ('..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ArchiveError(f"{archive}: member {name!r} is a symbolic link")
    if info.file_size > MAX_MEMBER_BYTES:
        raise ArchiveError(f"{archive}: member {name!r} unpacks to {info.file_size} bytes (limit {MAX_MEMBER_BYTES})")
    if info.file_size > 10 * 1024 * 1024 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ArchiveError(f"{archive}: member {name!r} is compressed {info.file_size // max(info.compress_size, 1)}:1 (ZIP bomb?)")


def _group_uploads(archive: str, zf: zipfile.ZipFile, entries: list[tuple[zipfile.ZipInfo, Entry | None]]) -> list[Upload]:
    uploads: dict[str, Upload] = {}
    total = 0
    for info, entry in entries:
        assert entry is not None
        if entry.moodle_id is None:
            raise ArchiveError(f"{archive}: member {info.filename!r} names no participant id")
        data = _read_member(archive, zf, info)
        total += len(data)
        if total > MAX_TOTAL_BYTES:
            raise ArchiveError(f"{archive}: unpacks to more than {MAX_TOTAL_BYTES} bytes (ZIP bomb?)")
        upload = uploads.setdefault(entry.moodle_id, Upload(moodle_id=entry.moodle_id, label=entry.label))
        upload.files.append(UploadedFile(path=_nfc(entry.path), data=data))
    return sorted(uploads.values(), key=lambda u: int(u.moodle_id))


def _read_member(archive: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read with a hard cap: the sizes in the header are the sender's claim, the bytes are the truth."""
    chunks, size = [], 0
    try:
        with zf.open(info) as stream:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > MAX_MEMBER_BYTES:
                    raise ArchiveError(f"{archive}: member {info.filename!r} unpacks past {MAX_MEMBER_BYTES} bytes (ZIP bomb?)")
                chunks.append(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(f"{archive}: member {info.filename!r} is corrupt ({exc})") from None
    return b"".join(chunks)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _store_files(root: Path, upload: Upload) -> Path:
    folder = root / upload.moodle_id / upload.content_sha256()[:16]
    if folder.is_dir():
        return folder
    staging = folder.with_name(folder.name + f".partial-{os.getpid()}")
    for f in upload.files:
        target = staging / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.data)
    staging.replace(folder)
    return folder


def _participant(session: Session, task: str, upload: Upload, name: str, email: str) -> Participant:
    participant = session.exec(
        select(Participant).where(Participant.task == task, Participant.moodle_id == upload.moodle_id)
    ).first()
    if participant is None:
        participant = Participant(task=task, moodle_id=upload.moodle_id, name=name, email=email)
    else:
        participant.name, participant.email = name, email or participant.email
    session.add(participant)
    session.flush()
    return participant


def _record_submission(
    session: Session, root: Path, task: TaskConfig, batch: ImportBatch, participant: Participant,
    upload: Upload, status: str,
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
                            folder=str(folder), status=status)
    session.add(submission)
    session.flush()
    matched = {f.path: f.notebook_id for f in _matched_files(task, upload)}
    for f in upload.files:
        session.add(SubmittedFile(submission_id=submission.id, path=f.path, original_name=PurePosixPath(f.path).name,
                                  sha256=f.sha256, size=len(f.data), notebook_id=matched.get(f.path, "")))
    return "new" if current is None else "changed"


@dataclass(frozen=True)
class _Match:
    path: str
    notebook_id: str


def _matched_files(task: TaskConfig, upload: Upload) -> list[_Match]:
    """Which uploaded file is which task notebook: same file name (any case), else the only notebook."""
    notebooks = [f for f in upload.files if f.path.lower().endswith(".ipynb")]
    matches = []
    for expected in task.notebooks:
        same_name = [f for f in notebooks if PurePosixPath(f.path).name.casefold() == expected.file.casefold()]
        if same_name:
            matches.append(_Match(same_name[0].path, expected.id))
        elif len(task.notebooks) == 1 and len(notebooks) == 1:
            matches.append(_Match(notebooks[0].path, expected.id))
    return matches


def _worksheet_details(sheet: Worksheet, config: Config) -> dict[str, tuple[str, str, str]]:
    """participant id -> (full name, e-mail, 'submitted' | 'draft') from the worksheet."""
    headers = config.moodle
    sheet.require(headers.identifier_header, headers.fullname_header)
    details = {}
    for row in sheet.rows:
        number = participant_number(sheet.get(row, headers.identifier_header), headers.participant_prefix)
        if number is None:
            continue
        status = sheet.get(row, headers.status_header)
        is_draft = headers.draft_status.casefold() in status.casefold()
        details[number] = (sheet.get(row, headers.fullname_header), sheet.get(row, headers.email_header),
                           "draft" if is_draft else "submitted")
    return details


def submission_files(config: Config, submission: Submission) -> Path:
    """The folder holding a submission's files."""
    return config.path(config.paths.submissions) / submission.folder


__all__ = ["ImportReport", "Upload", "import_submissions", "read_moodle_zip", "submission_files"]
