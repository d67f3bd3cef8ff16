"""Similarity: which current submissions of a task share their code, so that TAs know where to look.

A hint for people, never a verdict: nothing here reads or changes a run. Each submission becomes units (the
code cells of its task notebooks; for a repository task its LaTeX, Markdown and code files), each unit a set
of winnowing fingerprints (autograder.winnow), so reordered cells still match. What the course gave out is
boilerplate and removed first: cells identical to a released one and every k-gram of the released notebooks
(the instructor notebooks without their solution regions, plus the stub nbgrader puts in) and of the task's
template. Pairs are found through an inverted index from fingerprint to submissions, so only submissions that
share something are scored. Files are only read, never run; .git internals are skipped.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autograder.config import Config, TaskConfig
from autograder.errors import GraderError
from autograder.ingest import submission_files
from autograder.models import Participant, Submission, SubmittedFile
from autograder.release import CODE_STUB
from autograder.winnow import Fingerprint, Token, defined_names, kgram_hashes, python_tokens, winnow, word_tokens

DEFAULT_THRESHOLD = 0.5
MIN_SHARED = 4  # fewer shared fingerprints are chance, whatever the score
# A fingerprint in more submissions than this is course-wide idiom, not copying (MOSS's -m, default 10). It also
# bounds the pairwise step: a fingerprint held by m submissions costs m*(m-1)/2 pair counts.
MAX_SHARERS = 10
MAX_FILE_BYTES = 2 * 1024 * 1024  # a larger file is data or output, not something a student wrote
MAX_PASSAGES = 8
MAX_PASSAGE_LINES = 40
REPOSITORY_SUFFIXES = {".tex", ".md", ".markdown", ".py", ".ipynb", ".r", ".sh", ".c", ".h", ".cpp", ".java",
                       ".js", ".jl", ".m", ".bib"}
VERDICT_NOTE = "Similarity is a hint for TAs to look at; no verdict is changed by it."
_SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION.*?^[ \t]*### END SOLUTION[^\n]*$", re.M | re.S)


@dataclass(frozen=True)
class Unit:
    """One code cell or file of a submission: where it is, its text, its fingerprints."""

    name: str  # "task5_clustering.ipynb, cell 3" or a file path
    text: str
    fingerprints: tuple[Fingerprint, ...]


@dataclass
class Work:
    participant: str
    name: str
    members: frozenset[str]
    units: list[Unit] = field(default_factory=list)
    where: dict[int, tuple[int, Fingerprint]] = field(default_factory=dict)  # hash -> (unit index, first place)


@dataclass(frozen=True)
class Passage:
    unit_a: str
    lines_a: tuple[int, int]
    text_a: str
    unit_b: str
    lines_b: tuple[int, int]
    text_b: str


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    name_a: str
    name_b: str
    score: float  # Jaccard of the two fingerprint sets (without course-wide idiom)
    contained_a: float  # share of a's fingerprints found in b
    contained_b: float
    shared: int
    passages: tuple[Passage, ...]


@dataclass(frozen=True)
class SimilarityReport:
    task: str
    threshold: float
    submissions: int
    team_pairs_skipped: int
    pairs: tuple[Pair, ...]
    note: str = VERDICT_NOTE


def find_similar(config: Config, task: TaskConfig, engine: Engine, threshold: float = DEFAULT_THRESHOLD,
                 max_sharers: int = MAX_SHARERS) -> SimilarityReport:
    """Compare every pair of current submissions of `task`; the pairs scoring at least `threshold`, best first.

    Code found in more than `max_sharers` submissions counts as course-wide idiom and matches no pair."""
    if not 0 < threshold <= 1:
        raise GraderError(f"similarity threshold must be in (0, 1], got {threshold}")
    if max_sharers < 2:
        raise GraderError(f"similarity max sharers must be at least 2, got {max_sharers}")
    boilerplate_cells, boilerplate = _boilerplate(config, task)
    works = [_work(config, task, participant, submission, files, boilerplate_cells, boilerplate)
             for participant, submission, files in _current_submissions(engine, task.id)]
    pairs, skipped = _compare(works, threshold, max_sharers)
    return SimilarityReport(task.id, threshold, len(works), skipped, tuple(pairs))


# --- What the course gave out ---------------------------------------------------------------------------------


def _boilerplate(config: Config, task: TaskConfig) -> tuple[set[str], set[int]]:
    """Released cells (without whitespace) and every k-gram hash of the released code and template."""
    task_dir = config.task_dir(task.id)
    cells = {_key(CODE_STUB)}
    hashes = {f.hash for f in kgram_hashes(python_tokens(CODE_STUB))}
    for notebook in task.notebooks:
        source = task_dir / "source" / notebook.file
        if not source.is_file():
            raise GraderError(f"task {task.id}: released notebook {source} is missing (the boilerplate to ignore)")
        codes = [code for _, code in _numbered_cells(source.read_text(encoding="utf-8"))]
        defined = defined_names(codes)  # with the solutions: the names a student's notebook defines too
        for code in map(_released, codes):
            cells.add(_key(code))
            hashes.update(f.hash for f in kgram_hashes(python_tokens(code, defined)))
    template = task_dir / "template"
    if task.repository is not None and template.is_dir():
        for path in _repository_files(template):
            for _, _, tokens in _file_units(path, path.relative_to(template).as_posix()):
                hashes.update(f.hash for f in kgram_hashes(tokens))
    return cells, hashes


def _released(code: str) -> str:
    """A source cell as nbgrader releases it: each solution region replaced by the stub, at its indentation."""
    return _SOLUTION.sub(lambda m: "\n".join(m.group(1) + line for line in CODE_STUB.splitlines()), code)


def _key(code: str) -> str:
    return "".join(code.split())


# --- What each submission holds -------------------------------------------------------------------------------


def _current_submissions(engine: Engine, task: str) -> list[tuple[Participant, Submission, list[SubmittedFile]]]:
    with Session(engine) as session:
        rows = session.exec(
            select(Participant, Submission).join(Submission, Submission.participant_id == Participant.id)
            .where(Participant.task == task, Submission.current == True)  # noqa: E712
            .order_by(Participant.moodle_id)
        ).all()
        return [(p, s, list(session.exec(select(SubmittedFile).where(SubmittedFile.submission_id == s.id)).all()))
                for p, s in rows]


def _work(config: Config, task: TaskConfig, participant: Participant, submission: Submission,
          files: list[SubmittedFile], boilerplate_cells: set[str], boilerplate: set[int]) -> Work:
    # Who stands behind it: participant ids ("p:"); a team without recorded members only as itself ("g:"),
    # since Moodle numbers groups and participants independently.
    members = frozenset("p:" + line.split(":", 1)[0] for line in participant.members.splitlines() if line.strip())
    own = frozenset({("g:" if participant.is_team else "p:") + participant.moodle_id})
    work = Work(participant.moodle_id, participant.name, members if participant.is_team and members else own)
    folder = submission_files(config, submission)
    if task.repository is not None:
        sources = [(path, path.relative_to(folder).as_posix()) for path in _repository_files(folder)]
    else:
        sources = [(folder / f.path, f.path) for f in sorted(files, key=lambda f: f.notebook_id) if f.notebook_id]
    for path, shown in sources:
        for name, text, tokens in _file_units(path, shown):
            if _key(text) in boilerplate_cells:
                continue
            kept = [f for f in winnow(kgram_hashes(tokens)) if f.hash not in boilerplate]
            if kept:
                work.units.append(Unit(name, text, tuple(kept)))
    for index, unit in enumerate(work.units):
        for fingerprint in unit.fingerprints:
            work.where.setdefault(fingerprint.hash, (index, fingerprint))
    return work


def _repository_files(folder: Path) -> list[Path]:
    """LaTeX, Markdown and code files of an unpacked repository; .git and other hidden folders are skipped."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).parts
        if any(part.startswith(".") for part in relative) or path.is_symlink() or not path.is_file():
            continue
        if path.suffix.lower() in REPOSITORY_SUFFIXES and path.stat().st_size <= MAX_FILE_BYTES:
            found.append(path)
    return found


def _file_units(path: Path, shown: str) -> list[tuple[str, str, list[Token]]]:
    """(unit name, text, tokens) of a file: a notebook gives one unit per code cell, any other file one unit."""
    text = _read(path)
    if text is None:
        return []
    if path.suffix.lower() == ".ipynb":
        cells = _numbered_cells(text)
        defined = defined_names([code for _, code in cells])  # a cell uses what earlier ones define
        return [(f"{shown}, cell {number}", code, python_tokens(code, defined)) for number, code in cells]
    return [(shown, text, python_tokens(text) if path.suffix.lower() == ".py" else word_tokens(text))]


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES * (16 if path.suffix.lower() == ".ipynb" else 1):
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _numbered_cells(text: str) -> list[tuple[int, str]]:
    """(1-based cell number, source) of each code cell; a notebook that is not JSON gives none."""
    try:
        cells = json.loads(text).get("cells", [])
    except (ValueError, AttributeError):
        return []
    found = []
    for number, cell in enumerate(cells if isinstance(cells, list) else [], 1):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            found.append((number, "".join(source) if isinstance(source, list) else str(source)))
    return found


# --- Comparing ------------------------------------------------------------------------------------------------


def _compare(works: list[Work], threshold: float, max_sharers: int) -> tuple[list[Pair], int]:
    """Score only pairs that share a fingerprint (inverted index); teams sharing a member are never a pair."""
    index: dict[int, list[int]] = defaultdict(list)
    for number, work in enumerate(works):
        for fingerprint_hash in work.where:
            index[fingerprint_hash].append(number)
    shared: Counter[tuple[int, int]] = Counter()
    rare = Counter()  # per submission: its fingerprints that are not course-wide idiom (the ones scored)
    for holders in index.values():
        if len(holders) <= max_sharers:
            rare.update(holders)
        if 1 < len(holders) <= max_sharers:
            for i, a in enumerate(holders):
                for b in holders[i + 1:]:
                    shared[(a, b)] += 1
    pairs, skipped = [], 0
    for (a, b), count in shared.items():
        first, second = works[a], works[b]
        if first.members & second.members:
            skipped += 1
            continue
        score = count / (rare[a] + rare[b] - count)
        if count >= MIN_SHARED and score >= threshold:
            pairs.append(_pair(first, second, (count, rare[a], rare[b]), score, index, max_sharers))
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return pairs, skipped


def _pair(a: Work, b: Work, counts: tuple[int, int, int], score: float, index: dict[int, list[int]],
          max_sharers: int) -> Pair:
    count, rare_a, rare_b = counts
    common = [h for h in a.where if h in b.where and len(index[h]) <= max_sharers]
    return Pair(a.participant, b.participant, a.name, b.name, round(score, 3), round(count / rare_a, 3),
                round(count / rare_b, 3), count, _passages(a, b, common))


def _passages(a: Work, b: Work, common: list[int]) -> tuple[Passage, ...]:
    """Matching stretches: shared fingerprints grouped by the two units they are in, lines merged per group."""
    groups: dict[tuple[int, int], list[tuple[Fingerprint, Fingerprint]]] = defaultdict(list)
    for fingerprint_hash in common:
        unit_a, where_a = a.where[fingerprint_hash]
        unit_b, where_b = b.where[fingerprint_hash]
        groups[(unit_a, unit_b)].append((where_a, where_b))
    ranked = sorted(groups.items(), key=lambda item: -len(item[1]))[:MAX_PASSAGES]
    passages = []
    for (unit_a, unit_b), places in ranked:
        lines_a = (min(p.first_line for p, _ in places), max(p.last_line for p, _ in places))
        lines_b = (min(q.first_line for _, q in places), max(q.last_line for _, q in places))
        passages.append(Passage(a.units[unit_a].name, lines_a, _lines(a.units[unit_a].text, lines_a),
                                b.units[unit_b].name, lines_b, _lines(b.units[unit_b].text, lines_b)))
    return tuple(passages)


def _lines(text: str, span: tuple[int, int]) -> str:
    first, last = span
    last = min(last, first + MAX_PASSAGE_LINES - 1)
    return "\n".join(text.splitlines()[first - 1:last])


# --- Showing --------------------------------------------------------------------------------------------------


def report_json(report: SimilarityReport) -> dict:
    """The report as plain data (for --json and the review page)."""
    return {
        "task": report.task, "threshold": report.threshold, "submissions": report.submissions,
        "team_pairs_skipped": report.team_pairs_skipped, "note": report.note,
        "pairs": [{
            "a": p.a, "b": p.b, "name_a": p.name_a, "name_b": p.name_b, "score": p.score,
            "contained_a": p.contained_a, "contained_b": p.contained_b, "shared": p.shared,
            "passages": [{"unit_a": s.unit_a, "lines_a": list(s.lines_a), "text_a": s.text_a,
                          "unit_b": s.unit_b, "lines_b": list(s.lines_b), "text_b": s.text_b}
                         for s in p.passages],
        } for p in report.pairs],
    }


def report_html(report: SimilarityReport) -> str:
    """A self-contained HTML page: each pair with its passages side by side; every student text escaped."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Similarity {e(report.task)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;width:100%;table-layout:fixed}td,th{border:1px solid #ccc;padding:4px;"
        "vertical-align:top}pre{white-space:pre-wrap;margin:0;font-size:90%}</style></head><body>",
        f"<h1>Similarity of {e(report.task)}</h1><p><strong>{e(report.note)}</strong></p>",
        f"<p>{report.submissions} submissions compared, threshold {report.threshold}, "
        f"{len(report.pairs)} pair(s) at or above it; {report.team_pairs_skipped} pair(s) sharing a team member "
        "skipped.</p>",
    ]
    for pair in report.pairs:
        parts.append(f"<h2>{e(pair.a)} ({e(pair.name_a)}) – {e(pair.b)} ({e(pair.name_b)}): score {pair.score}</h2>"
                     f"<p>{pair.shared} shared fingerprints; {pair.contained_a:.0%} of {e(pair.a)}'s code is in "
                     f"{e(pair.b)}'s, {pair.contained_b:.0%} the other way.</p><table>")
        for s in pair.passages:
            parts.append(f"<tr><th>{e(s.unit_a)}, lines {s.lines_a[0]}–{s.lines_a[1]}</th>"
                         f"<th>{e(s.unit_b)}, lines {s.lines_b[0]}–{s.lines_b[1]}</th></tr>"
                         f"<tr><td><pre>{e(s.text_a)}</pre></td><td><pre>{e(s.text_b)}</pre></td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["DEFAULT_THRESHOLD", "Pair", "Passage", "SimilarityReport", "find_similar", "report_html", "report_json"]
