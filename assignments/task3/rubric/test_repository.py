"""Rubric for task 3: the team's git repository (README.md, task/task1.tex, .gitignore, history) and task3.ipynb.

Everything about the repository comes from the grader's facts command (probes/repo_facts.py), which ran git,
latexmk and pdflatex in a sandbox of its own, over the upload as submitted and a fresh clone of its committed
state, in a process that loads no student code (the notebook's own code cannot change it); here only its JSON
is judged. History, authors and build files are judged on the team's own work: what lies after the staff's
template repository (rubric/template.bundle, see template_history.py). README.md is parsed
with a real CommonMark parser (markdown-it-py, tables switched on). Thresholds come from grader.toml
[tasks.task3.rubric].
"""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from autograder.release import TEXT_STUB
from plain_structure import structure_of
from template_history import Template, load_template

pytestmark = pytest.mark.notebook("repo")

TEX_FILE = "task/task1.tex"
# Build files of LaTeX that must never be committed (the PDF may be: the task leaves that to the team).
BUILD_SUFFIXES = (".aux", ".log", ".synctex.gz", ".fls", ".fdb_latexmk", ".out", ".toc")
# What the .gitignore must keep out, at least: what latexmk and the editors' SyncTeX write for every document.
MUST_IGNORE = (".aux", ".log", ".synctex.gz", ".fls", ".fdb_latexmk")
# Commit messages that say nothing (compared in lower case, without trailing punctuation).
PLACEHOLDER_MESSAGES = {
    "update", "updates", "updated", "asdf", "test", "tests", "fix", "fixes", "wip", "commit", "changes", "change",
    "stuff", "misc", "aktualisiert", "änderungen", "änderung", "update readme.md", "add files via upload",
    "final", "done", "fertig", "neu", "new", "save", "upload", "...", "",
}
# The course's diagram, included as a picture (\includegraphics, \includesvg) or as TeX code (\input of a file
# in diagram/, e.g. a TikZ or Inkscape pdf_tex export); each names the file it includes.
FIGURE = re.compile(r"\\include(?:graphics|svg)\s*(?:\[[^\]]*\])?\s*\{([^}]*)\}|\\input\s*\{([^}]*diagram[^}]*)\}")
ABSOLUTE_PATH = re.compile(r"^(?:[A-Za-z]:[/\\]|/|~|\\\\)")
NO_REPOSITORY = ("Nicht geprüft: in der Abgabe wurde kein Git-Repository gefunden (siehe Kriterium "
                 "„Git-Repository abgegeben“).")


class FactsUnavailable(RuntimeError):
    """Raised when the grader's facts command did not measure the submission: the grader's fault, an error."""


class RuntimeLacksPackage(RuntimeError):
    """Raised when task1.tex loads a package (.sty/.cls) the grader's TeX does not have: the runtime's gap, not
    the student's fail (the criterion is `error`; the German message for staff is in the detail)."""


# TeX's most common first errors, said in German (TeX's own line follows each).
TEX_MESSAGES = [
    (re.compile(r"Undefined control sequence"), "ein unbekannter Befehl (Tippfehler oder fehlendes Paket?)"),
    (re.compile(r"File `([^']+)' not found"), "die Datei „{0}“ wurde nicht gefunden (Pfad relativ zu task/?)"),
    (re.compile(r"\\begin\{([^}]+)\} on input line \d+ ended by \\end\{([^}]+)\}"),
     "die Umgebung „{0}“ wird nicht geschlossen, bevor \\end{{{1}}} kommt"),
    (re.compile(r"Option clash for package ([\w-]+)"), "das Paket „{0}“ wird zweimal mit verschiedenen Optionen geladen"),
    (re.compile(r"Missing \$ inserted"), "ein Formelzeichen steht außerhalb einer Formel ($ … $ fehlt)"),
    (re.compile(r"Missing \\begin\{document\}"), "vor \\begin{document} steht Text"),
    (re.compile(r"Environment (\S+) undefined"), "die Umgebung „{0}“ ist unbekannt (Paket nicht geladen?)"),
]


@pytest.fixture(scope="module")
def facts(notebooks):
    record = notebooks["repo"].facts
    if not record.get("measured"):
        raise FactsUnavailable(f"task 3 facts were not measured: {record.get('message', 'no facts.json')}")
    return record.get("facts") or {}


@pytest.fixture(scope="module")
def template() -> Template:
    """The staff's template repository: its commits and files are not the team's work."""
    return load_template()


def _need_repository(facts) -> None:
    if not facts.get("repository") or "files" not in facts:
        pytest.fail(NO_REPOSITORY, pytrace=False)


def _strip_tex_comments(source: str) -> str:
    return re.sub(r"(?<!\\)%.*", "", source)


@pytest.mark.criterion("repository")
def test_repository(facts):
    """Git-Repository abgegeben (ZIP mit .git oder Git-Bundle)"""
    assert facts.get("repository"), (
        "In Ihrer Abgabe wurde kein Git-Repository gefunden. Laden Sie das Repository als ZIP-Datei mit dem "
        "(versteckten) Ordner .git hoch oder das Notebook zusammen mit einem Git-Bundle "
        "(git bundle create team.bundle --all)."
    )
    assert "files" in facts, (
        "Ihr Git-Repository ließ sich nicht klonen (" + str(facts.get("error", ""))[:200] + "). Prüfen Sie, ob "
        "es mindestens einen Commit enthält und ob der Ordner .git vollständig hochgeladen wurde."
    )


@pytest.mark.criterion("history")
def test_history(facts, settings, template):
    """Mehrere Commits mit aussagekräftigen Nachrichten"""
    _need_repository(facts)
    minimum, min_chars = int(settings["min_commits"]), int(settings["min_message_chars"])
    commits = template.team_commits(facts.get("commits", []))
    real = [c for c in commits if _is_real_message(c["subject"], min_chars)]
    placeholders = sorted({c["subject"] for c in commits if c not in real})
    hint = (" Nachrichten wie " + ", ".join(f"„{m}“" for m in placeholders[:4])
            + " sagen nicht, was sich geändert hat." if placeholders else "")
    assert len(real) >= minimum, (
        f"Ihre Historie hat nach der Vorlage des Kursteams {len(commits)} eigene(n) Commit(s), davon {len(real)} "
        f"mit einer aussagekräftigen Nachricht; nötig sind mindestens {minimum}.{hint} Committen Sie in Schritten "
        "und beschreiben Sie jeweils, was der Commit ändert (z. B. „README.md in Markdown umgesetzt“)."
    )


def _is_real_message(subject: str, min_chars: int) -> bool:
    text = subject.strip()
    plain = text.lower().rstrip(".!… ").strip()
    return len(text) >= min_chars and plain not in PLACEHOLDER_MESSAGES and len(set(plain)) > 3


@pytest.mark.criterion("authors")
def test_authors(facts, settings, template):
    """Beide Teammitglieder haben committet"""
    _need_repository(facts)
    minimum = int(settings["min_authors"])
    people = _distinct_authors(template.team_commits(facts.get("commits", [])))
    names = ", ".join(sorted(people)) or "niemand"
    assert len(people) >= minimum, (
        f"Alle Commits nach der Vorlage des Kursteams stammen von {names}; nötig sind Commits von mindestens "
        f"{minimum} Personen. Jedes Teammitglied committet unter dem eigenen Namen (git config user.name und git config user.email)."
    )


def _distinct_authors(commits) -> set[str]:
    """One name per person: commits with the same name or the same e-mail address (case aside) are one person."""
    people: list[tuple[set[str], set[str], str]] = []  # names, e-mails (lower case), name as first written
    for commit in reversed(commits):  # oldest first
        shown = commit["author"].strip()
        name, email = shown.lower(), commit["email"].strip().lower()
        joined = [p for p in people if name in p[0] or (email and email in p[1])]
        merged = (set().union({name}, *(p[0] for p in joined)), set().union({email} - {""}, *(p[1] for p in joined)),
                  joined[0][2] if joined else shown)
        people = [p for p in people if p not in joined] + [merged]
    return {shown for _, _, shown in people}


@pytest.mark.criterion("no_build_files")
def test_no_build_files(facts, template):
    """Keine LaTeX-Hilfsdateien im Repository"""
    _need_repository(facts)
    blobs = facts.get("blobs", {})
    committed = [f for f in facts.get("files", [])
                 if f.lower().endswith(BUILD_SUFFIXES) and not template.holds(f, blobs.get(f))]  # the staff's own
    assert not committed, (
        "Diese Hilfsdateien von LaTeX sind eingecheckt und gehören nicht ins Repository: "
        + ", ".join(committed[:8]) + (" …" if len(committed) > 8 else "")
        + ". Entfernen Sie sie mit git rm --cached <Datei> und committen Sie; die .gitignore verhindert, dass "
        "sie wieder hineingeraten."
    )


@pytest.mark.criterion("gitignore")
def test_gitignore(facts):
    """Eine .gitignore hält die LaTeX-Hilfsdateien fern"""
    _need_repository(facts)
    stem = TEX_FILE[: -len(".tex")]
    ignored = set(facts.get("ignored", []))
    missing = [f"*{suffix}" for suffix in MUST_IGNORE if stem + suffix not in ignored]
    has_file = any(f == ".gitignore" or f.endswith("/.gitignore") for f in facts.get("files", []))
    assert has_file, (
        "Im Repository ist keine .gitignore eingecheckt. Legen Sie eine an, die die Hilfsdateien von LaTeX "
        "ausschließt (" + ", ".join(f"*{s}" for s in MUST_IGNORE) + "), und committen Sie sie."
    )
    assert not missing, (
        "Ihre .gitignore schließt diese Hilfsdateien von LaTeX (geprüft für task/task1.tex) nicht aus: "
        + ", ".join(missing) + "."
    )


@pytest.mark.criterion("latex")
def test_latex_compiles(facts):
    """task/task1.tex lässt sich mit LaTeX übersetzen und bindet Bilder relativ ein"""
    _need_repository(facts)
    latex = facts.get("latex") or {}
    assert latex.get("found"), f"Die Datei {TEX_FILE} ist nicht im Repository eingecheckt."
    graphics = ["".join(found) for found in FIGURE.findall(_strip_tex_comments(latex["source"]))]
    absolute = [g.strip() for g in graphics if ABSOLUTE_PATH.match(g.strip())]
    if absolute:
        pytest.fail(
            f"{TEX_FILE} bindet ein Bild mit einem absoluten Pfad ein ({absolute[0]}). Diesen Pfad gibt es nur auf "
            "Ihrem Rechner; auf jedem anderen bricht das Übersetzen ab. Verwenden Sie einen Pfad relativ zu "
            "task/, z. B. \\includegraphics{../diagram/ablauf.png}.", pytrace=False,
        )
    if latex.get("timed_out"):
        pytest.fail(f"Das Übersetzen von {TEX_FILE} mit latexmk wurde nach dem Zeitlimit abgebrochen.", pytrace=False)
    if latex.get("ok"):
        return
    first = latex.get("first_error") or {}
    missing = str(first.get("missing", ""))
    if missing.endswith((".sty", ".cls")) and not any(f.endswith("/" + missing) or f == missing
                                                      for f in facts.get("files", [])):
        raise RuntimeLacksPackage(
            f"{TEX_FILE} lädt {missing}, das in der TeX-Installation des Graders fehlt (Zeile {first.get('line')}). "
            "Das ist kein Fehler der Abgabe: Paket in die Laufzeitumgebung aufnehmen (Makefile APT_PACKAGES, "
            "Container-Image) und neu bewerten."
        )
    pytest.fail(_latex_feedback(first, str(latex.get("errors", ""))), pytrace=False)


def _latex_feedback(first: dict, errors: str) -> str:
    """The first real error of the build, in German, with its line and TeX's own words."""
    if not first:
        shown = "\n".join(errors.splitlines()[:6])
        return f"{TEX_FILE} lässt sich mit latexmk -pdf (pdflatex) nicht übersetzen. Die Ausgabe von LaTeX:\n{shown}"
    tex = str(first.get("message", ""))
    said = next((german.format(*match.groups()) for pattern, german in TEX_MESSAGES if (match := pattern.search(tex))),
                "")
    where = f"in Zeile {first['line']}" if first.get("line") else "beim Übersetzen"
    lines = [f"{TEX_FILE} lässt sich mit latexmk -pdf (pdflatex) nicht übersetzen. Der erste Fehler steht {where}"
             + (f": {said}." if said else ".")]
    lines.append(f"LaTeX meldet: {tex}")
    if first.get("context"):
        lines.append(f"An dieser Stelle: {first['context']}")
    return "\n".join(lines)


@pytest.mark.criterion("latex_content")
def test_latex_content(facts):
    """task1.tex setzt den Aufgabentext: Abschnitte, Listen, Formel, Code und Diagramm"""
    _need_repository(facts)
    latex = facts.get("latex") or {}
    assert latex.get("found"), f"Die Datei {TEX_FILE} ist nicht im Repository eingecheckt."
    source = _strip_tex_comments(latex.get("source", ""))
    checks = {
        "Abschnitte (\\section)": len(re.findall(r"\\(?:sub)*section\*?\s*[\[{]|\\addsec\*?\s*\{|\\chapter\*?\s*\{", source)) >= 2,
        "eine Liste (itemize, enumerate oder description)": re.search(r"\\begin\{(?:itemize|enumerate|description)\}", source),
        "eine Formel": re.search(r"\$[^$]+\$|\\\[|\\\(|\\begin\{(?:equation|align|gather|multline|displaymath|math)\*?\}", source),
        "ein Code-Listing (lstlisting, verbatim oder minted)":
            re.search(r"\\begin\{(?:lstlisting|verbatim|Verbatim|minted)\}|\\lstinputlisting|\\inputminted", source),
        "das Diagramm (\\includegraphics, \\includesvg oder \\input)": FIGURE.search(source),
    }
    missing = [what for what, ok in checks.items() if not ok]
    assert not missing, (
        f"In {TEX_FILE} fehlt noch: " + "; ".join(missing) + ". Setzen Sie den ganzen Text aus task/task1.txt."
    )


@pytest.mark.criterion("readme")
def test_readme_structure(facts, settings, template):
    """README.md setzt die Struktur von read_me.txt in Markdown um"""
    _need_repository(facts)
    readme = facts.get("readme")
    assert readme, (
        "Im Hauptordner des Repositorys ist keine README.md eingecheckt. Wandeln Sie read_me.txt in eine "
        "Markdown-Datei README.md um."
    )
    tokens = MarkdownIt("commonmark").enable("table").parse(readme["text"])
    kinds = {t.type for t in tokens}
    inline = {child.type for t in tokens if t.children for child in t.children}
    headings = sum(1 for t in tokens if t.type == "heading_open")
    # Only what read_me.txt (the template version the team started from) has is asked for.
    plain = structure_of(template.read_me(facts.get("commits", [])))
    minimum = min(int(settings["readme_min_headings"]), plain.sections)
    checks = {
        f"Überschriften (mindestens {minimum}, z. B. „## Team“; gefunden: {headings})": (plain.sections == 0
                                                                                        or headings >= minimum),
        "eine Liste (Zeilen mit „- “ oder „1. “)": not plain.lists or {"bullet_list_open", "ordered_list_open"} & kinds,
        "eine Tabelle (| Spalte | Spalte | mit Trennzeile |---|---|)": not plain.tables or "table_open" in kinds,
        "ein Link ([Text](https://…) oder <https://…>)": not plain.links or "link_open" in inline,
        "ein Codeblock (``` … ``` oder eingerückt)": not plain.code or {"fence", "code_block"} & kinds,
    }
    missing = [what for what, ok in checks.items() if not ok]
    assert not missing, (
        f"{readme['name']} enthält noch nicht die verlangte Markdown-Struktur. Es fehlt: " + "; ".join(missing) + "."
    )


@pytest.mark.criterion("formulas")
def test_formulas(nb, facts, settings):
    """Die Formeln im Notebook lassen sich mit LaTeX setzen"""
    formulas = [f for f in facts.get("formulas", []) if not f.get("given")]
    minimum = int(settings["min_formulas"])
    stub = any(TEXT_STUB in text or "YOUR ANSWER HERE" in text for _, text in nb.markdown_cells())
    assert len(formulas) >= minimum, (
        f"In Ihren Markdown-Zellen steht {'keine Formel' if not formulas else f'nur {len(formulas)} Formel(n)'}; "
        f"erwartet sind mindestens {minimum} (z. B. $$\\bar{{x}} = \\frac{{1}}{{n}} \\sum_{{i=1}}^{{n}} x_i$$)."
        + (" Die Antwortzelle enthält noch den Platzhalter der Vorlage." if stub else "")
    )
    broken = [f for f in formulas if f.get("ok") is False]
    described = "; ".join(
        f"Zelle {f['cell'] + 1}: {f['tex'][:80]} – {_first_error(f.get('error', ''))}" for f in broken[:3]
    )
    assert not broken, (
        f"{len(broken)} Formel(n) lassen sich mit LaTeX (pdflatex mit amsmath) nicht setzen: {described}. Prüfen "
        "Sie Klammern, \\left/\\right-Paare und Befehlsnamen."
    )


def _first_error(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    first = next((line.lstrip("! ") for line in lines if line.startswith("!")), lines[0] if lines else "Fehler")
    return first.rstrip(".")[:120]


@pytest.mark.criterion("history_shown")
def test_history_shown(nb, facts):
    """Das Notebook zeigt die Git-Historie an"""
    _need_repository(facts)
    shown = "\n".join(_output_text(cell) for cell in nb.cells if cell["cell_type"] == "code")
    hashes = [c["hash"][:7] for c in facts.get("commits", []) if len(c.get("hash", "")) >= 7]
    assert any(h in shown for h in hashes), (
        "Keine Code-Zelle Ihres Notebooks zeigt die Historie des Repositorys an. Geben Sie sie z. B. mit "
        "!git log --oneline aus."
    )


def _output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        text = output.get("text") or output.get("data", {}).get("text/plain", "")
        parts.append("".join(text) if isinstance(text, list) else str(text))
    return "\n".join(parts)


@pytest.mark.criterion("no_errors")
def test_no_errors(nb):
    """Alle Zellen laufen ohne Fehler"""
    assert not nb.errors(), nb.errors_message()
