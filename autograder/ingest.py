"""Ingest: take a Moodle "Download all submissions" ZIP into submissions/TASK/ and the database, all or nothing.

Every member is checked before anything is written (absolute paths, "..", symlinks, encryption, non-UTF-8
names, sizes that betray a ZIP bomb), so one bad member rejects the whole archive with one line. Files are
stored per version (`submissions/TASK/<participant>/<content hash>/`), then one transaction records the
import; an interrupted import leaves at most unreferenced folders, which the next import reuses.

A `.zip` a student uploaded is unpacked (one level deep) into a folder named after it, with the same member
checks, its files and bytes counted with the outer archive's. Uploaded notebooks are matched to the task's
notebooks by the nbgrader cell ids of the task's source notebooks (the released ones keep them), the file
name only breaking ties. With the worksheet, uploads are joined on participant id: drafts are marked, and
team uploads (group id folders, "Default group") get their members from the worksheet's Group column.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
import os
import stat
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autograder.config import Config, TaskConfig
from autograder.errors import ArchiveError
from autograder.models import ImportBatch, Participant, Submission, SubmittedFile
from autograder.moodle import (
    DEFAULT_GROUP_ID, SUBMISSION_PLUGIN, Entry, Worksheet, parse_entry, participant_number, prefix_label,
    read_worksheet,
)

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
    teams: dict[str, list[str]] = field(default_factory=dict)  # group id -> member participant ids


def import_submissions(
    config: Config, task: TaskConfig, archive: Path, engine: Engine, worksheet: Path | None = None
) -> ImportReport:
    """Import a Moodle submissions ZIP for `task`; raise ArchiveError (importing nothing) on any bad input."""
    uploads = read_moodle_zip(archive)
    sheet = read_worksheet(worksheet) if worksheet else None
    owners = _owners(uploads, sheet, config)
    expected = expected_cell_ids(config, task)
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
            matches = match_notebooks(task, expected, upload.files, config.sandbox.max_notebook_mb)
            _import_upload(session, root, batch, task, upload, owners[upload.moodle_id], matches, report)
        batch.new_submissions = len(report.new) + len(report.changed)
        session.commit()
    return report


def _import_upload(session: Session, root: Path, batch: ImportBatch, task: TaskConfig, upload: Upload,
                   owner: "_Owner", matches: dict[str, str], report: ImportReport) -> None:
    participant = _participant(session, task.id, upload, owner)
    problem = _missing_message(task, matches, upload)
    outcome = _record_submission(session, root, batch, participant, upload, owner.status, matches, problem)
    getattr(report, outcome).append(upload.moodle_id)
    if owner.status == "draft":
        report.drafts.append(upload.moodle_id)
    if owner.members:
        report.teams[upload.moodle_id] = [pid for pid, _ in owner.members]
    missing = [nb.file for nb in task.notebooks if nb.id not in matches.values()]
    if missing:
        report.problems[upload.moodle_id] = "no notebook matches " + ", ".join(missing)


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
        budget = _Budget(archive.name)
        _check_members(archive.name, members, budget)
        entries = [(info, parse_entry(_nfc(info.filename))) for info in members]
        strangers = [info.filename for info, entry in entries if entry is None]
        if strangers:
            if len(strangers) == len(entries):
                raise ArchiveError(
                    f"{archive.name}: not a Moodle submissions download (e.g. {strangers[0]!r} does not name a "
                    f"participant as 'Name_1234567_assignsubmission_file/...')"
                )
            raise ArchiveError(f"{archive.name}: member {strangers[0]!r} is not in Moodle's naming scheme")
        return _group_uploads(archive.name, zf, entries, budget)


@dataclass
class _Budget:
    """Members and bytes of one import, the outer archive and the ZIPs inside it counted together."""

    archive: str
    members: int = 0
    declared: int = 0
    read: int = 0

    def count(self, where: str, members: list[zipfile.ZipInfo]) -> None:
        self.members += len(members)
        self.declared += sum(info.file_size for info in members)
        if self.members > MAX_MEMBERS:
            raise ArchiveError(f"{where}: more than the limit of {MAX_MEMBERS} files")
        if self.declared > MAX_TOTAL_BYTES:
            raise ArchiveError(f"{where}: unpacks to {self.declared} bytes, more than {MAX_TOTAL_BYTES} (ZIP bomb?)")

    def take(self, size: int) -> None:
        self.read += size
        if self.read > MAX_TOTAL_BYTES:
            raise ArchiveError(f"{self.archive}: unpacks to more than {MAX_TOTAL_BYTES} bytes (ZIP bomb?)")


def _check_members(where: str, members: list[zipfile.ZipInfo], budget: _Budget) -> None:
    for info in members:
        _check_member(where, info)
    budget.count(where, members)


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


def _group_uploads(archive: str, zf: zipfile.ZipFile, entries: list[tuple[zipfile.ZipInfo, Entry | None]],
                   budget: _Budget) -> list[Upload]:
    uploads: dict[str, Upload] = {}
    for info, entry in entries:
        assert entry is not None
        if entry.moodle_id is None:
            raise ArchiveError(f"{archive}: member {info.filename!r} names no participant id")
        if not entry.plugin.startswith(SUBMISSION_PLUGIN):
            continue  # feedback files of an earlier round are the staff's, not the student's work
        data = _read_member(archive, zf, info)
        budget.take(len(data))
        upload = uploads.setdefault(entry.moodle_id, Upload(moodle_id=entry.moodle_id, label=entry.label))
        path = _nfc(entry.path)
        if path.casefold().endswith(".zip") and entry.plugin == "assignsubmission_file":
            files = _unpack_inner_zip(f"{archive}: participant {entry.moodle_id}, {path}", path, data, budget)
        else:
            files = [UploadedFile(path=path, data=data)]
        for uploaded in files:
            _add_file(archive, upload, uploaded)
    for upload in uploads.values():
        _check_paths(archive, upload)
    return sorted(uploads.values(), key=lambda u: int(u.moodle_id))


def _check_paths(archive: str, upload: Upload) -> None:
    """A file may not also be a folder of another file ('repo' next to 'repo.zip' unpacked to 'repo/...')."""
    folders = {str(parent) for f in upload.files for parent in PurePosixPath(f.path).parents}
    clash = next((f.path for f in upload.files if f.path in folders), None)
    if clash is not None:
        raise ArchiveError(f"{archive}: participant {upload.moodle_id}: {clash!r} is both a file and a folder")


def _add_file(archive: str, upload: Upload, uploaded: UploadedFile) -> None:
    if any(f.path == uploaded.path for f in upload.files):
        raise ArchiveError(f"{archive}: participant {upload.moodle_id}: two files are named {uploaded.path!r} "
                           "(flat download? use 'Download submissions in folders')")
    upload.files.append(uploaded)


def _unpack_inner_zip(where: str, path: str, data: bytes, budget: _Budget) -> list[UploadedFile]:
    """A ZIP the student uploaded: its files go to a folder named after it, checked like the outer archive.

    One level deep: a ZIP inside it stays a file. `.git/` and other hidden folders are kept as they are.
    """
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ArchiveError(f"{where}: not a readable ZIP archive ({exc})") from None
    folder = path[: -len(".zip")]
    with inner:
        members = [info for info in inner.infolist() if not info.is_dir()]
        _check_members(where, members, budget)
        files = []
        for info in members:
            content = _read_member(where, inner, info)
            budget.take(len(content))
            files.append(UploadedFile(path=f"{folder}/{_nfc(info.filename.replace(chr(92), '/'))}", data=content))
    return files


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
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError,
            zlib.error) as exc:
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
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.data)
        except OSError as exc:  # e.g. a name too long for the file system
            raise ArchiveError(f"participant {upload.moodle_id}: cannot store {f.path!r} ({exc.strerror})") from None
    staging.replace(folder)
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
                                  sha256=f.sha256, size=len(f.data), notebook_id=matches.get(f.path, "")))
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


def match_notebooks(task: TaskConfig, expected: dict[str, frozenset[str]], files: list[UploadedFile],
                    max_mb: int) -> dict[str, str]:
    """Uploaded path -> task notebook id, by shared nbgrader cell ids; the file name only breaks ties.

    A notebook without nbgrader metadata can still match by its exact file name, and a task of one notebook
    takes the only uploaded notebook. Hidden folders (.ipynb_checkpoints, .git) are never candidates.
    """
    candidates = [f for f in files if f.path.casefold().endswith(".ipynb") and not _hidden(f.path)]
    cell_ids = {f.path: _cell_ids(f.data) if len(f.data) <= max_mb * 1024 * 1024 else frozenset() for f in candidates}
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
