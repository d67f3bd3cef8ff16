"""Moodle's file formats: names in a "Download all submissions" ZIP, and the offline grading worksheet.

Knowledge only, no I/O policy: ingest reads with it, export writes with it. See docs/moodle-formats.md for
where each rule comes from (mod/assign's downloader, gradingtable and offline feedback importer).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from autograder.errors import ArchiveError

# <label>[_<id>]_<assignsubmission|assignfeedback>_<plugin>, then "/<path>" (folders; "_/" before 4.1)
# or "_<file name>" (flat mode). The label never contains "_" (Moodle replaces it with a space).
_ENTRY = re.compile(
    r"""^(?P<label>[^_/]*?)
    (?:_(?P<id>\d+))?
    _(?P<plugin>assign(?:submission|feedback)_[a-z0-9]+)
    (?:_?/(?P<relpath>.+)|_(?P<flatname>[^/]+))$""",
    re.X,
)
BLIND_LABEL = "Participant"
DEFAULT_GROUP = "Default group"
# Group ids start at 1; the team of users in no group ("Default group", no id in the ZIP) is recorded as 0.
DEFAULT_GROUP_ID = "0"
SUBMISSION_PLUGIN = "assignsubmission_"
# clean_filename() (PARAM_FILE) drops these from a ZIP prefix; a name's "_" becomes a space first.
_UNSAFE_IN_PREFIX = re.compile(r"""[\x00-\x1f\x7f&<>"`|':\\/]""")


@dataclass(frozen=True)
class Entry:
    """One file of a Moodle submission ZIP, split into who sent it and where it belongs."""

    label: str  # full name, "Participant" (blind marking), group name, or "Default group"
    moodle_id: str | None  # participant id, or group id for team submissions; None for "Default group"
    plugin: str  # e.g. assignsubmission_file, assignsubmission_onlinetext
    path: str  # path inside the participant's submission

    @property
    def owner(self) -> tuple[str, str | None]:
        return (self.label, self.moodle_id)


def parse_entry(name: str) -> Entry | None:
    """Split a ZIP member name as Moodle 2.4+ writes it (folders or flat), or None if it is not one."""
    match = _ENTRY.match(name)
    if match is None:
        return None
    path = match["relpath"] if match["relpath"] is not None else match["flatname"]
    moodle_id = match["id"]
    if moodle_id is None and match["label"] == DEFAULT_GROUP:
        moodle_id = DEFAULT_GROUP_ID
    return Entry(label=match["label"], moodle_id=moodle_id, plugin=match["plugin"], path=path)


def prefix_label(name: str) -> str:
    """A full name or group name as it appears in a ZIP prefix: "_" -> space, clean_filename()'s characters gone."""
    return _UNSAFE_IN_PREFIX.sub("", name.replace("_", " ")).strip()


def scale_items(cell: str) -> list[str]:
    """The items of a worksheet `Scale` cell (Moodle turns the newlines between items into three spaces)."""
    return [item.strip() for item in re.split(r"\s{3,}|\n", cell) if item.strip()]


def format_points(value: float, decimal_separator: str) -> str:
    """A point grade as format_float(grade, 2) writes it in the importing user's language."""
    return f"{value:.2f}".replace(".", decimal_separator)


def parse_points(cell: str, decimal_separator: str) -> float | None:
    """Moodle's unformat_float(): drop spaces, the language's decimal separator becomes '.'."""
    text = re.sub(r"\s", "", cell).replace(decimal_separator, ".")
    try:
        return float(text)
    except ValueError:
        return None


# --- The offline grading worksheet ------------------------------------------------------------------------

_BOM = "\ufeff"


@dataclass
class Worksheet:
    """A grading worksheet as Moodle offers it: header and rows kept verbatim, cells addressed by header."""

    header: list[str]
    rows: list[list[str]]
    delimiter: str = ","
    source: Path | None = None
    _columns: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Moodle's importer compares header texts exactly; we accept any case and surrounding spaces.
        self._columns = {}
        for index, name in enumerate(self.header):
            self._columns.setdefault(name.strip().casefold(), index)

    def column(self, name: str) -> int | None:
        return self._columns.get(name.strip().casefold())

    def require(self, *names: str) -> None:
        missing = [n for n in names if self.column(n) is None]
        if missing:
            where = self.source.name if self.source else "worksheet"
            raise ArchiveError(f"{where}: missing column(s) {', '.join(repr(m) for m in missing)} "
                               "(another language? set the header names under [moodle] in grader.toml)")

    def get(self, row: list[str], name: str) -> str:
        index = self.column(name)
        return row[index] if index is not None and index < len(row) else ""

    def set(self, row: list[str], name: str, value: str) -> None:
        index = self.column(name)
        if index is None:
            raise ArchiveError(f"worksheet has no column {name!r}")
        while len(row) <= index:
            row.append("")
        row[index] = value


def participant_number(identifier: str, prefix: str) -> str | None:
    """'Participant 1234567' -> '1234567' (the prefix is Moodle's localised 'Participant ')."""
    text = identifier.strip()
    if text.casefold().startswith(prefix.strip().casefold()):
        number = text[len(prefix.strip()):].strip()
        return number if number.isdigit() else None
    return None


def read_worksheet(path: Path) -> Worksheet:
    """Read a worksheet (UTF-8, with or without BOM; comma, semicolon, colon or tab separated)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ArchiveError(f"{path}: worksheet not found") from None
    except UnicodeDecodeError:
        raise ArchiveError(f"{path}: worksheet is not UTF-8 text") from None
    text = text.removeprefix(_BOM)
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;:\t", key=first_line.count)
    if first_line.count(delimiter) == 0:
        raise ArchiveError(f"{path}: not a Moodle grading worksheet (no separated header line)")
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise ArchiveError(f"{path}: malformed CSV ({exc})") from None
    records = [r for r in records if r]
    if not records:
        raise ArchiveError(f"{path}: worksheet is empty")
    return Worksheet(header=records[0], rows=records[1:], delimiter=delimiter, source=path)


def write_worksheet(sheet: Worksheet, path: Path) -> None:
    """Write as Moodle writes it: UTF-8 with BOM, the same separator, fputcsv-style quoting, CRLF-free."""
    lines = [_csv_line(sheet.header, sheet.delimiter)]
    lines += [_csv_line(row, sheet.delimiter) for row in sheet.rows]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes((_BOM + "\n".join(lines) + "\n").encode("utf-8"))
    tmp.replace(path)


def _csv_line(cells: list[str], delimiter: str) -> str:
    return delimiter.join(_csv_cell(c, delimiter) for c in cells)


def _csv_cell(value: str, delimiter: str) -> str:
    # Like PHP's fputcsv: quote when the cell holds the separator, a quote, whitespace or a line break.
    if any(ch in value for ch in (delimiter, '"', " ", "\t", "\n", "\r", "\\")):
        return '"' + value.replace('"', '""') + '"'
    return value
