"""Similarity across teams: a disguised copy is found, an independent solution and the release alone are not.

Real notebooks of task 5 (the reference solution, an independent alternative, the untouched release) go
through `grader import` and `grader similarity`, and so do task 3's repositories (cloned from the solution
bundles by the test itself); nothing is executed by the grader, so no sandbox is needed.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from pathlib import Path

import nbformat

from conftest import REPO, Workspace, clone_bundle, make_workspace, moodle_zip, zipped
from autograder.winnow import kgram_hashes, python_tokens

SOLUTIONS = REPO / "assignments" / "task5" / "solutions"
QUERY = "task5_query.ipynb"

QUERY_ONLY_CONFIG = """
[course]
name = "Similarity"
short_name = "SIM"

[tasks.task5]
title = "Aufgabe 5"

[[tasks.task5.notebooks]]
id = "query"
file = "task5_query.ipynb"
title = "Teil 2"
"""


def _workspace(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path / "course", QUERY_ONLY_CONFIG, REPO / "assignments")


def _solution(name: str) -> str:
    return (SOLUTIONS / name / QUERY).read_text(encoding="utf-8")


def _disguised_copy(text: str) -> str:
    """The notebook with every variable, function and argument renamed, comments rewritten, code cells reversed
    and the code re-spaced (untokenized), as a copier hiding a copy would do."""
    nb = nbformat.reads(text, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    names: set[str] = set()
    for cell in code:
        names |= _bound_names(cell.source)
    for cell in code:
        cell.source = _rewrite(cell.source, {name: f"meine_{name}_x" for name in names})
    positions = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    for position, cell in zip(positions, reversed(code)):
        nb.cells[position] = cell
    return nbformat.writes(nb)


def _bound_names(source: str) -> set[str]:
    tree = ast.parse("\n".join(l for l in source.splitlines() if not l.lstrip().startswith(("%", "!"))))
    found = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    found |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    found |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args if a.arg != "self"}
    return found


def _rewrite(source: str, renames: dict[str, str]) -> str:
    tokens = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME:
            tokens.append((tok.type, renames.get(tok.string, tok.string)))
        elif tok.type == tokenize.COMMENT:
            tokens.append((tok.type, "# ganz eigener Gedanke"))
        else:
            tokens.append((tok.type, tok.string))
    return tokenize.untokenize(tokens)


def _similarity(workspace: Workspace, submissions: dict[str, str], *extra: str) -> dict:
    archive = moodle_zip(workspace.root / "moodle.zip", {pid: {QUERY: text} for pid, text in submissions.items()})
    imported = workspace.cli("import", "task5", archive)
    assert imported.exit_code == 0, imported.output
    result = workspace.cli("similarity", "task5", "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_disguised_copy_is_reported_and_independent_solution_is_not(tmp_path: Path) -> None:
    """Renamed variables, reversed cells, new comments and spacing still match; an alternative solution does not."""
    reference = _solution("reference")
    copy = _disguised_copy(reference)
    assert "meine_" in copy and copy != reference
    workspace = _workspace(tmp_path)
    html_page = tmp_path / "similarity.html"
    report = _similarity(workspace, {"101": reference, "102": copy, "103": _solution("query_alt_lemma_knn")},
                         "--html", str(html_page))

    assert report["submissions"] == 3
    assert "no verdict is changed" in report["note"]
    assert [(p["a"], p["b"]) for p in report["pairs"]] == [("101", "102")]
    pair = report["pairs"][0]
    assert pair["score"] >= 0.9
    assert pair["passages"], "the matching passages are shown"
    assert any("meine_" in s["text_b"] and "meine_" not in s["text_a"] for s in pair["passages"])
    page = html_page.read_text(encoding="utf-8")
    assert "meine_" in page and "no verdict is changed" in page
    text = workspace.cli("similarity", "task5")
    assert text.exit_code == 0 and "101" in text.output and "score" in text.output


def test_release_alone_gives_no_pair(tmp_path: Path) -> None:
    """Two uploads of the untouched release share only boilerplate: no pair."""
    release = _solution("query_wrong_untouched_release")
    report = _similarity(_workspace(tmp_path), {"201": release, "202": release}, "--threshold", "0.01")
    assert report["pairs"] == []


def test_team_members_are_never_a_pair(tmp_path: Path) -> None:
    """A participant whose worksheet team includes the other is skipped, however alike their code."""
    from sqlmodel import select

    from autograder.models import Participant, Session, open_database

    workspace = _workspace(tmp_path)
    reference = _solution("reference")
    _similarity(workspace, {"301": reference, "302": _disguised_copy(reference)})
    engine = open_database(workspace.config().database_url())
    with Session(engine) as session:
        team = session.exec(select(Participant).where(Participant.moodle_id == "301")).one()
        team.is_team, team.members = True, "302:Student 302\n303:Student 303"
        session.add(team)
        session.commit()
    result = workspace.cli("similarity", "task5", "--json")
    report = json.loads(result.stdout)
    assert report["pairs"] == [] and report["team_pairs_skipped"] == 1


def test_normalisation_ignores_names_comments_docstrings_and_spacing() -> None:
    """The token stream of a renamed, re-commented, re-spaced function equals the original's."""
    original = 'def f(data, k):\n    """Sum."""\n    total = np.sum(data[:k])  # add\n    return total\n'
    disguised = "def g( xs,n ):\n    # summe\n    s=np.sum( xs[ :n ] )\n    return s\n"
    assert [t.text for t in python_tokens(original)] == [t.text for t in python_tokens(disguised)]
    assert {f.hash for f in kgram_hashes(python_tokens(original))} \
        == {f.hash for f in kgram_hashes(python_tokens(disguised))}


def test_repository_task_compares_latex_markdown_and_code_not_git_or_template(course: Workspace,
                                                                              tmp_path: Path) -> None:
    """Task 3: a team's repository copied (with a changed line) by another is a pair; repositories holding only
    the template are not; nothing from .git is ever shown."""
    reference = clone_bundle(TASK3 / "solutions" / "reference" / "repo.bundle", tmp_path / "a" / "team")
    copied = clone_bundle(TASK3 / "solutions" / "reference" / "repo.bundle", tmp_path / "b" / "team")
    readme = next(p for p in copied.iterdir() if p.suffix.lower() == ".md")
    readme.write_text(readme.read_text(encoding="utf-8").replace("\n", "\n\n", 3), encoding="utf-8")
    archive = moodle_zip(tmp_path / "moodle.zip", {
        "401": {"team.zip": zipped(reference)}, "402": {"team.zip": zipped(copied)},
        "403": {"team.zip": zipped(TASK3 / "template")}, "404": {"team.zip": zipped(TASK3 / "template")},
    })
    assert course.cli("import", "task3", archive).exit_code == 0
    result = course.cli("similarity", "task3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(p["a"], p["b"]) for p in report["pairs"]] == [("401", "402")]
    units = {s["unit_a"] for s in report["pairs"][0]["passages"]}
    assert any(u.endswith((".tex", ".md")) for u in units) and not any(".git" in u for u in units), units


TASK3 = REPO / "assignments" / "task3"






def test_html_report_escapes_student_text() -> None:
    """Student code and names reach the page only as text, never as markup."""
    from autograder.similarity import Pair, Passage, SimilarityReport, report_html

    hostile = '</pre><script>alert("x")</script>'
    passage = Passage("a.ipynb, cell 1", (1, 1), hostile, "b.ipynb, cell 2", (1, 1), hostile)
    pair = Pair("1", "2", "<b>Eve</b>", "Bob", 1.0, 1.0, 1.0, 9, (passage,))
    page = report_html(SimilarityReport("task5", 0.5, 2, 0, (pair,)))
    assert "<script" not in page and "<b>Eve" not in page
    assert "&lt;/pre&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "no verdict is changed" in page


def test_review_page_shows_the_pairs(tmp_path: Path) -> None:
    """The TA review page lists the same pairs, with both passages and links to each submission."""
    from starlette.testclient import TestClient

    from autograder.models import open_database
    from autograder.review.app import create_app

    reference = _solution("reference")
    workspace = _workspace(tmp_path)
    report = _similarity(workspace, {"201": reference, "202": _disguised_copy(reference)})
    assert [(p["a"], p["b"]) for p in report["pairs"]] == [("201", "202")]
    config = workspace.config()
    client = TestClient(create_app(config, open_database(config.database_url()), default_task="task5"))
    listing = client.get("/tasks/task5")
    assert listing.status_code == 200 and 'href="/tasks/task5/similarity"' in listing.text
    page = client.get("/tasks/task5/similarity")
    assert page.status_code == 200
    assert "no verdict is changed" in page.text
    assert 'href="/tasks/task5/participants/201"' in page.text and 'href="/tasks/task5/participants/202"' in page.text
    assert "meine_" in page.text and "<script" not in page.text  # passages are text; the page runs no script
    assert "script-src 'none'" in page.headers["content-security-policy"]
