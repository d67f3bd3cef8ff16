"""Build task 3's solution repositories from their descriptions and store each as `repo.bundle`.

A git repository cannot be committed with its .git inside the grader's own repository, so every solution folder
(assignments/task3/solutions/<name>/) holds the team's repository as a git bundle (`git bundle create --all`)
and its expected.toml; only wrong_zip_without_git holds `repo.zip`, the working tree zipped without .git, and
is uploaded as it is. `grader sample` turns a bundle into what a team uploads: the repository as a ZIP with
its .git, or (`upload = "bundle"`) the bundle itself beside the notebook.

The staff's template repository (template/ committed by the course team) is stored as rubric/template.bundle:
the rubric counts only what lies after its commits as the team's work. Each repository starts from the release
(`grader release task3`: template + student notebook), re-rooted or (`on_template`) cloned from the template's
history, and is built commit by commit with fixed authors and dates; the notebook is filled with the variant's
answers and executed in the working tree (nbclient, the venv's python3 kernel) before the commit that adds it, as a student would.
Everything here runs on our own, trusted files.

    .venv/bin/python assignments/task3/tools/make_solutions.py            # all solutions
    .venv/bin/python assignments/task3/tools/make_solutions.py reference  # some
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

TASK_DIR = Path(__file__).resolve().parents[1]
REPO = TASK_DIR.parents[1]
SOLUTIONS = TASK_DIR / "solutions"
NOTEBOOK = "task3.ipynb"
# The staff's template repository (template/ with its history), what students start from; the rubric reads it.
TEMPLATE_BUNDLE = TASK_DIR / "rubric" / "template.bundle"
TEMPLATE_COMMITS = [("Vorlage für Aufgabe 3: read_me.txt und Aufgabentext", ["read_me.txt", "task"]),
                    ("Code und Ablaufdiagramm aus Aufgabe 1 ergänzt", ["code", "diagram"])]
# The template's read_me.txt of the year before (no table); its first commit in the template's history, so a team
# that started from it is recognised and asked only for the structure this text has.
READ_ME_PREVIOUS = """Aufgabe 3 - Git, Markdown und LaTeX

Dieses Repository gehört zum Kurs "Werkzeuge für das wissenschaftliche Arbeiten".

Team

Name 1
Name 2

Ordner

code: Python-Code aus Aufgabe 1
diagram: Ablaufdiagramm
task: Aufgabentext (task1.txt) und seine LaTeX-Fassung (task1.tex)

Übersetzen

Im Ordner task:

    latexmk -pdf task1.tex

Links

Git: https://git-scm.com/doc
Markdown: https://commonmark.org/help/
"""
PREVIOUS_TEMPLATE_COMMIT = "Vorlage des Vorjahres: read_me.txt"

README_WITHOUT_TABLE = r"""# Aufgabe 3 – Git, Markdown und LaTeX

Dieses Repository gehört zum Kurs *Werkzeuge für das wissenschaftliche Arbeiten*.

## Team

- Lena Schmidt
- Jonas Müller

## Ordner

- `code`: Python-Code aus Aufgabe 1
- `diagram`: Ablaufdiagramm
- `task`: Aufgabentext (`task1.txt`) und seine LaTeX-Fassung (`task1.tex`)

## Übersetzen

Im Ordner `task`:

```
latexmk -pdf task1.tex
```

## Links

- Git: <https://git-scm.com/doc>
- Markdown: <https://commonmark.org/help/>
"""

LENA = ("Lena Schmidt", "lena.schmidt@stud.example.edu")
JONAS = ("Jonas Müller", "jonas.mueller@stud.example.edu")
COURSE = ("Kursteam WWA", "wwa-kurs@example.edu")
START = 1_762_765_200  # 2025-11-10 09:00 UTC; each commit an hour and a half later

README = r"""# Aufgabe 3 – Git, Markdown und LaTeX

Dieses Repository gehört zum Kurs *Werkzeuge für das wissenschaftliche Arbeiten*. Es enthält den Aufgabentext
von Aufgabe 1 als LaTeX-Dokument, den Python-Code dazu und ein Notebook mit Markdown und Formeln.

## Team

- Lena Schmidt (Matrikelnummer 123456)
- Jonas Müller (Matrikelnummer 654321)

## Inhalt

- `code/`: Python-Code aus Aufgabe 1
- `diagram/`: Ablaufdiagramm für den LaTeX-Text
- `task/`: Aufgabentext als LaTeX-Quelltext (`task1.tex`)
- `task3.ipynb`: Notebook mit Markdown, LaTeX-Formeln und der Git-Historie

## Dateien

| Datei | Inhalt | Format |
|-------|--------|--------|
| `task/task1.tex` | Aufgabentext | LaTeX |
| `diagram/ablauf.png` | Ablaufdiagramm | PNG |
| `code/statistik.py` | Mittelwert und Streuung | Python |

## Übersetzen

Das PDF entsteht im Ordner `task` mit dem Befehl

```bash
latexmk -pdf task1.tex
```

Die Hilfsdateien von LaTeX (zum Beispiel `task1.aux` und `task1.log`) gehören nicht ins Repository.

## Links

- [Git-Dokumentation](https://git-scm.com/doc)
- [Markdown-Kurzreferenz](https://commonmark.org/help/)
- [LaTeX-Einführung](https://www.overleaf.com/learn)
"""

# Another order and other syntax: setext headings, links first as autolinks, a numbered list, an aligned
# table, an indented code block.
README_OTHER_ORDER = r"""Aufgabe 3: Git, Markdown und LaTeX
==================================

Links zum Nachschlagen: <https://git-scm.com/doc>, <https://commonmark.org/help/> und
<https://www.overleaf.com/learn>.

Übersetzen
----------

Im Ordner `task`:

    latexmk -pdf task1.tex

Hilfsdateien wie `task1.aux` landen dank `.gitignore` nicht im Repository.

Dateien
-------

Datei                | Inhalt                  | Format
:--------------------|:------------------------|:------:
task/task1.tex       | Aufgabentext            | LaTeX
diagram/ablauf.png   | Ablaufdiagramm          | PNG
code/statistik.py    | Mittelwert und Streuung | Python

Team
----

1. Lena Schmidt
2. Jonas Müller

Das Repository gehört zum Kurs **Werkzeuge für das wissenschaftliche Arbeiten**.
"""

TEX = r"""\documentclass[a4paper,11pt]{article}
\usepackage[T1]{fontenc}
\usepackage[ngerman]{babel}
\usepackage{lmodern}
\usepackage{amsmath}
\usepackage{graphicx}
\usepackage{listings}
\lstset{language=Python, basicstyle=\ttfamily\small, frame=single}

\title{Aufgabe 1 -- Python-Grundlagen}
\author{Lena Schmidt \and Jonas Müller}
\date{}

\begin{document}
\maketitle

\section{Einleitung}
In dieser Aufgabe berechnen Sie einfache Kennzahlen einer Messreihe. Die Messwerte stehen in einer Liste;
Ihr Programm soll sie zusammenfassen und das Ergebnis ausgeben.

\section{Teilaufgaben}
\begin{enumerate}
  \item Legen Sie eine Liste mit mindestens zehn Messwerten an.
  \item Berechnen Sie den Mittelwert und die Standardabweichung der Messwerte.
  \item Geben Sie beide Werte mit zwei Nachkommastellen aus.
  \item Stellen Sie den Ablauf Ihres Programms als Diagramm dar (Abbildung~\ref{fig:ablauf}).
\end{enumerate}

\section{Formeln}
Der Mittelwert von $n$ Messwerten $x_1, \dots, x_n$ ist
\begin{equation}
  \bar{x} = \frac{1}{n} \sum_{i=1}^{n} x_i
\end{equation}
und die Standardabweichung ist
\begin{equation}
  s = \sqrt{\frac{1}{n-1} \sum_{i=1}^{n} \left(x_i - \bar{x}\right)^2}.
\end{equation}

\section{Code}
Ein Beispiel für den Mittelwert in Python:
\begin{lstlisting}
def mittelwert(werte):
    return sum(werte) / len(werte)
\end{lstlisting}

\section{Diagramm}
\begin{figure}[h]
  \centering
  \includegraphics[width=0.8\textwidth]{%(graphic)s}
  \caption{Ablauf: Daten einlesen, Kennzahlen berechnen, Ergebnis ausgeben}
  \label{fig:ablauf}
\end{figure}

\section{Hinweise}
\begin{itemize}
  \item Kommentieren Sie Ihren Code.
  \item Verwenden Sie aussagekräftige Variablennamen.
  \item Abgabe als Teil Ihres Repositorys.
%(end_itemize)s
\end{document}
"""

# KOMA-Script, \graphicspath, verbatim instead of listings, align* and a description list.
TEX_KOMA = r"""\documentclass[paper=a4, fontsize=11pt]{scrartcl}
\usepackage[T1]{fontenc}
\usepackage[ngerman]{babel}
\usepackage{lmodern}
\usepackage{amsmath, amssymb}
\usepackage{graphicx}
\usepackage{hyperref}
\graphicspath{{../diagram/}}

\begin{document}
\title{Aufgabe 1}
\subtitle{Python-Grundlagen}
\author{Lena Schmidt, Jonas Müller}
\maketitle

\section*{Einleitung}
In dieser Aufgabe berechnen Sie einfache Kennzahlen einer Messreihe.

\section*{Teilaufgaben}
\begin{enumerate}
  \item Liste mit mindestens zehn Messwerten anlegen,
  \item Mittelwert und Standardabweichung berechnen,
  \item beide Werte mit zwei Nachkommastellen ausgeben,
  \item den Ablauf als Diagramm darstellen.
\end{enumerate}

\section*{Formeln}
\begin{align*}
  \bar{x} &= \frac{1}{n} \sum_{i=1}^{n} x_i, &
  s &= \sqrt{\frac{1}{n-1} \sum_{i=1}^{n} (x_i - \bar{x})^2}
\end{align*}

\section*{Code}
\begin{verbatim}
def mittelwert(werte):
    return sum(werte) / len(werte)
\end{verbatim}

\section*{Diagramm}
\begin{center}
  \includegraphics[scale=0.7]{ablauf}
\end{center}

\section*{Hinweise}
\begin{description}
  \item[Code] kommentieren,
  \item[Namen] aussagekräftig wählen,
  \item[Abgabe] im Repository.
\end{description}
\end{document}
"""

# As real documents of the course are written: latex-extra packages (enumitem, titlesec) and the diagram as SVG
# with \includesvg (svg package: Inkscape through shell escape).
TEX_LATEX_EXTRA = r"""\documentclass[a4paper,11pt]{article}
\usepackage[T1]{fontenc}
\usepackage[ngerman]{babel}
\usepackage{lmodern}
\usepackage{amsmath}
\usepackage{enumitem}
\usepackage{titlesec}
\usepackage{svg}
\usepackage{listings}
\titleformat{\section}{\large\sffamily\bfseries}{\thesection}{1em}{}
\setlist[itemize]{noitemsep}

\begin{document}
\section{Einleitung}
In dieser Aufgabe berechnen Sie einfache Kennzahlen einer Messreihe.

\section{Teilaufgaben}
\begin{enumerate}[label=(\alph*)]
  \item Legen Sie eine Liste mit mindestens zehn Messwerten an.
  \item Berechnen Sie Mittelwert und Standardabweichung.
  \item Stellen Sie den Ablauf als Diagramm dar.
\end{enumerate}

\section{Formeln}
\[ \bar{x} = \frac{1}{n} \sum_{i=1}^{n} x_i, \qquad s = \sqrt{\frac{1}{n-1} \sum_{i=1}^{n} (x_i - \bar{x})^2} \]

\section{Code}
\begin{lstlisting}[language=Python]
def mittelwert(werte):
    return sum(werte) / len(werte)
\end{lstlisting}

\section{Diagramm}
\begin{figure}[h]
  \centering
  \includesvg[width=0.6\textwidth]{../diagram/ablauf}
  \caption{Ablauf des Programms}
\end{figure}

\section{Hinweise}
\begin{itemize}
  \item Kommentieren Sie Ihren Code.
  \item Abgabe als Teil Ihres Repositorys.
\end{itemize}
\end{document}
"""

DIAGRAM_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="360" height="60" viewBox="0 0 360 60">
  <g font-family="sans-serif" font-size="14" fill="none" stroke="black">
    <rect x="5" y="10" width="100" height="40"/><rect x="130" y="10" width="100" height="40"/>
    <rect x="255" y="10" width="100" height="40"/>
    <path d="M105 30 H130 M230 30 H255"/>
  </g>
  <g font-family="sans-serif" font-size="14">
    <text x="20" y="35">Einlesen</text><text x="140" y="35">Berechnen</text><text x="270" y="35">Ausgeben</text>
  </g>
</svg>
"""

GITIGNORE = """# LaTeX-Hilfsdateien
*.aux
*.log
*.synctex.gz
*.fls
*.fdb_latexmk
*.out
*.toc

# Jupyter
.ipynb_checkpoints/
"""

# In the style of GitHub's TeX.gitignore, the PDF ignored too.
GITIGNORE_WITH_PDF = """## Core latex/pdflatex auxiliary files:
*.aux
*.lof
*.log
*.lot
*.fls
*.out
*.toc
*.fmt
*.fot
*.cb
*.cb2
.*.lb

## Intermediate documents:
*.dvi
*.xdv
*-converted-to.*
*.pdf

## Build tool auxiliary files:
*.fdb_latexmk
*.synctex
*.synctex(busy)
*.synctex.gz
*.synctex.gz(busy)
*.pdfsync
"""

FORMULAS_ONE_BLOCK = r"""
Mittelwert und Standardabweichung in einer gemeinsamen Formelumgebung:

$$
\begin{aligned}
\bar{x} &= \frac{1}{n} \sum_{i=1}^{n} x_i \\
s &= \sqrt{\frac{1}{n-1} \sum_{i=1}^{n} \left(x_i - \bar{x}\right)^2}
\end{aligned}
$$
"""

FORMULAS_MANY = r"""
**Mittelwert:** Für $n$ Messwerte $x_1, \dots, x_n$ gilt
\begin{equation}
\bar{x} = \frac{1}{n} \sum_{i=1}^{n} x_i
\end{equation}

**Standardabweichung:**

$$s = \sqrt{s^2}, \qquad s^2 = \frac{1}{n-1} \sum_{i=1}^{n} (x_i - \bar{x})^2$$

Die Varianz $s^2$ ist das Quadrat der Standardabweichung, und für $n = 1$ ist $s$ nicht definiert
(Division durch $n - 1 = 0$). Der Preis von 5 \$ hat mit den Formeln nichts zu tun.
"""

# The closing brace of \sqrt{ is missing: Jupyter's preview shows an error box, pdflatex stops.
FORMULAS_BROKEN = r"""
Der Mittelwert der Messwerte ist

$$\bar{x} = \frac{1}{n} \sum_{i=1}^{n} x_i$$

und die Standardabweichung ist

$$s = \sqrt{\frac{1}{n-1} \sum_{i=1}^{n} \left(x_i - \bar{x}\right)^2$$
"""

MESSAGES = [
    "Vorlage der Aufgabe 3 übernommen",
    "README.md aus read_me.txt in Markdown umgesetzt",
    ".gitignore für die Hilfsdateien von LaTeX angelegt",
    "Aufgabentext aus task1.txt in task1.tex gesetzt",
    "Notebook bearbeitet und mit Ausgaben gespeichert",
]


@dataclass
class Variant:
    name: str
    description: str
    failed: list[str] = field(default_factory=list)
    readme: str | None = README  # None: read_me.txt stays, no README.md
    readme_plain: bool = False  # README.md is read_me.txt renamed, still plain text
    tex: str = TEX % {"graphic": "../diagram/ablauf.png", "end_itemize": r"\end{itemize}"}
    gitignore: str = GITIGNORE
    formulas: str | None = None  # Markdown of the formula answer (None: the source's)
    authors: tuple = (LENA, JONAS, LENA, JONAS, LENA)
    messages: list[str] = field(default_factory=lambda: list(MESSAGES))
    build_files: bool = False  # task1.aux/.log committed before the .gitignore
    upload: str = "zip"  # zip (repository with .git) | bundle (task3.ipynb beside the bundle)
    zip_folder: str = ""  # the ZIP holds the repository in this folder (else at its root)
    untouched: bool = False  # the release as the course hands it out, one commit, nothing done
    without_git: bool = False  # stored (and uploaded) as repo.zip of the working tree, the .git left out
    on_template: bool = False  # cloned from the staff's template repository (its history kept), not re-rooted
    one_upload: bool = False  # all the work in one commit (as GitHub's "Add files via upload" makes it)
    figures: dict[str, str] = field(default_factory=dict)  # files committed with task1.tex (path: text)
    read_me_txt: str | None = None  # the template's read_me.txt the team started from (None: this year's)
    rerooted_by: tuple | None = None  # a fresh root whose first commit, by this person, re-adds the template files


VARIANTS = [
    Variant("reference", "Referenzlösung: README in Markdown, task1.tex übersetzbar, .gitignore, fünf Commits von "
            "zwei Personen, Formeln, Git-Historie im Notebook"),
    Variant("alt_bundle_upload", "Wie die Referenz, aber als Git-Bundle neben dem Notebook hochgeladen",
            upload="bundle"),
    Variant("alt_koma_script", "KOMA-Script (scrartcl), \\graphicspath, verbatim statt listings, align*",
            tex=TEX_KOMA),
    Variant("alt_readme_other_order", "README in anderer Reihenfolge und Syntax (Setext-Überschriften, Autolinks, "
            "nummerierte Liste, eingerückter Codeblock); ZIP mit Repository-Ordner", readme=README_OTHER_ORDER,
            zip_folder="wwa-aufgabe3"),
    Variant("alt_pdf_ignored", ".gitignore im Stil von GitHubs TeX.gitignore, die auch das PDF ausschließt",
            gitignore=GITIGNORE_WITH_PDF),
    Variant("alt_one_formula_block", "Beide Formeln in einem einzigen aligned-Block, keine Formel im Fließtext",
            formulas=FORMULAS_ONE_BLOCK),
    Variant("alt_many_formulas", "Viele Formeln: equation-Umgebung direkt in Markdown, Fließtextformeln, "
            "maskiertes Dollarzeichen", formulas=FORMULAS_MANY),
    Variant("alt_latex_extra_svg", "task1.tex wie auf dem Rechner der Studierenden: enumitem, titlesec und das "
            "Diagramm als SVG mit \\includesvg (Inkscape über Shell-Escape)", tex=TEX_LATEX_EXTRA,
            figures={"diagram/ablauf.svg": DIAGRAM_SVG}),
    Variant("alt_readme_without_table", "Mit der read_me.txt des Vorjahres (ohne Tabelle) begonnen; die README "
            "setzt deren Struktur um und hat keine Tabelle", readme=README_WITHOUT_TABLE, read_me_txt=READ_ME_PREVIOUS),
    Variant("wrong_rerooted_template_solo", "Neue Wurzel: ein Teammitglied committet nur die Dateien der Vorlage "
            "(am Inhalt als Vorlage erkannt), alle Arbeit danach stammt von einer Person", ["repo.authors"],
            authors=(LENA,) * 5, rerooted_by=JONAS, messages=["Notebook der Aufgabe 3 hinzugefügt", *MESSAGES[1:]]),
    Variant("wrong_zip_without_git", "Das Repository als ZIP ohne den versteckten Ordner .git hochgeladen",
            ["repo.repository", "repo.history", "repo.authors", "repo.no_build_files", "repo.gitignore", "repo.latex",
             "repo.latex_content", "repo.readme", "repo.history_shown"], without_git=True),
    Variant("wrong_build_files", "task1.aux und task1.log eingecheckt, bevor die .gitignore kam",
            ["repo.no_build_files"], build_files=True),
    Variant("wrong_absolute_path", "\\includegraphics mit absolutem Windows-Pfad C:/Users/...",
            ["repo.latex"], tex=TEX % {"graphic": "C:/Users/lena/Documents/Uni/wwa-aufgabe3/diagram/ablauf.png",
                                       "end_itemize": r"\end{itemize}"}),
    Variant("wrong_latex_error", "task1.tex übersetzt nicht: \\end{itemize} fehlt", ["repo.latex"],
            tex=TEX % {"graphic": "../diagram/ablauf.png", "end_itemize": ""}),
    Variant("wrong_readme_plain", "README.md ist nur die umbenannte read_me.txt, ohne Markdown-Struktur",
            ["repo.readme"], readme_plain=True),
    Variant("wrong_commit_messages", "Commit-Nachrichten wie „update“ und „asdf“", ["repo.history"],
            messages=["update", "asdf", "update", "fix", "."]),
    Variant("wrong_one_author", "Alle Commits von derselben Person", ["repo.authors"], authors=(LENA,) * 5),
    Variant("wrong_formula_error", "Eine Formel im Notebook lässt sich nicht setzen (schließende Klammer fehlt)",
            ["repo.formulas"], formulas=FORMULAS_BROKEN),
    Variant("wrong_untouched_release", "Die unveränderte Vorlage mit dem Notebook aus dem Release, so geklont "
            "und hochgeladen", ["repo.outputs", "repo.history", "repo.authors", "repo.readme", "repo.gitignore",
                                "repo.latex_content", "repo.formulas", "repo.history_shown", "repo.no_errors"],
            untouched=True),
    Variant("wrong_solo_on_template", "Eine Person allein auf der Vorlage des Kursteams (dessen Commits zählen nicht "
            "als zweite Person)", ["repo.authors"], authors=(LENA,) * 5, on_template=True,
            messages=["Notebook der Aufgabe 3 hinzugefügt", *MESSAGES[1:]]),
    Variant("wrong_template_one_upload", "Nur die Historie der Vorlage und ein einziger Commit „Add files via "
            "upload“ mit der ganzen Arbeit", ["repo.history", "repo.authors"], on_template=True, one_upload=True,
            messages=["Add files via upload"]),
]


def git(tree: Path, *args: str, env: dict | None = None) -> str:
    full = {**_git_env(), **(env or {})}
    done = subprocess.run(["git", *args], cwd=tree, env=full, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _git_env() -> dict:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    return {**keep, "HOME": "/nonexistent", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def release(tmp: Path) -> Path:
    """`grader release task3` in a scratch workspace; returns release/task3."""
    workspace = tmp / "workspace"
    workspace.mkdir()
    shutil.copy(REPO / "grader.toml", workspace / "grader.toml")
    (workspace / "assignments").symlink_to(REPO / "assignments")
    subprocess.run([str(REPO / ".venv" / "bin" / "grader"), "-c", str(workspace / "grader.toml"), "release",
                    "task3"], check=True, capture_output=True)
    return workspace / "release" / "task3"


def student_notebook(released: Path, variant: Variant) -> nbformat.NotebookNode:
    """The released notebook with the solution cells filled: the source's answers or the variant's."""
    source = {c.metadata.get("nbgrader", {}).get("grade_id"): c
              for c in nbformat.read(TASK_DIR / "source" / NOTEBOOK, as_version=4).cells}
    nb = nbformat.read(released / NOTEBOOK, as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if not cell.metadata.get("nbgrader", {}).get("solution"):
            continue
        text = source[grade_id].source
        text = "\n".join(line for line in text.split("\n")
                         if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
        if grade_id == "formula_answer" and variant.formulas is not None:
            text = variant.formulas.strip("\n")
        cell.source = text
    return nb


def execute(nb: nbformat.NotebookNode, tree: Path) -> nbformat.NotebookNode:
    """Run the notebook in the working tree as the student did; keep outputs, drop timing metadata."""
    from nbclient import NotebookClient

    env_backup = dict(os.environ)
    os.environ.update(_git_env(), HOME=str(tree.parent), JUPYTER_PLATFORM_DIRS="1")
    try:
        NotebookClient(nb, kernel_name="python3", timeout=120, record_timing=False,
                       resources={"metadata": {"path": str(tree)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def commit(tree: Path, number: int, author: tuple, message: str, paths: list[str], force: bool = False) -> None:
    stamp = f"@{START + number * 5400} +0100"
    name, email = author
    git(tree, "add", *(["-f"] if force else []), "--all", "--", *paths)
    git(tree, "commit", "-q", "--allow-empty-message", "-m", message, env={
        "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email, "GIT_COMMITTER_DATE": stamp,
    })


def template_history(tmp: Path) -> Path:
    """The staff's template repository: template/ committed by the course team (before any student), stored
    as the bundle students' repositories are compared with; returns its working tree."""
    tree = tmp / "template-repository"
    tree.mkdir()
    git(tree, "init", "-q", "-b", "main")
    (tree / "read_me.txt").write_text(READ_ME_PREVIOUS, encoding="utf-8")
    commit(tree, -len(TEMPLATE_COMMITS) - 2, COURSE, PREVIOUS_TEMPLATE_COMMIT, ["read_me.txt"])
    shutil.copytree(TASK_DIR / "template", tree, dirs_exist_ok=True)
    for number, (message, paths) in enumerate(TEMPLATE_COMMITS):
        commit(tree, number - len(TEMPLATE_COMMITS) - 1, COURSE, message, paths)
    TEMPLATE_BUNDLE.unlink(missing_ok=True)
    git(tree, "bundle", "create", "-q", str(TEMPLATE_BUNDLE), "--all")
    return tree


def build(variant: Variant, released: Path, tmp: Path, template: Path) -> Path:
    """The variant's repository, commit by commit, in tmp/<name>; returns its working tree."""
    tree = tmp / variant.name
    if variant.on_template:  # cloned from the course's repository; the release adds the notebook to it
        git(tmp, "clone", "-q", str(template), str(tree))
        git(tree, "remote", "remove", "origin")
        shutil.copytree(released, tree, dirs_exist_ok=True)
    elif variant.rerooted_by:  # the template's files (not its history) committed anew, then the notebook added
        shutil.copytree(TASK_DIR / "template", tree)
        git(tree, "init", "-q", "-b", "main")
        commit(tree, -1, variant.rerooted_by, "Initial commit", ["."])
        shutil.copytree(released, tree, dirs_exist_ok=True)
    else:
        shutil.copytree(released, tree)
        git(tree, "init", "-q", "-b", "main")
    if variant.read_me_txt is not None:
        (tree / "read_me.txt").write_text(variant.read_me_txt, encoding="utf-8")
    nb = student_notebook(released, variant)
    if variant.one_upload:
        return _one_upload(variant, nb, tree)
    if variant.untouched:
        commit(tree, 0, COURSE, "Vorlage für Aufgabe 3", ["."])
        return tree
    authors, messages = variant.authors, variant.messages
    commit(tree, 0, authors[0], messages[0], ["."])
    if variant.readme_plain:
        git(tree, "mv", "read_me.txt", "README.md")
    else:
        (tree / "README.md").write_text(variant.readme, encoding="utf-8")
        git(tree, "rm", "-q", "read_me.txt")
    commit(tree, 1, authors[1], messages[1], ["README.md"])
    (tree / "task" / "task1.tex").write_text(variant.tex, encoding="utf-8")
    gitignore_then_tex = [(".gitignore", 2), ("task", 3)]
    if variant.build_files:  # LaTeX run and everything committed before the .gitignore existed
        subprocess.run(["latexmk", "-pdf", "-interaction=nonstopmode", "task1.tex"], cwd=tree / "task",
                       capture_output=True, check=True)
        for name in ("task1.fls", "task1.fdb_latexmk", "task1.pdf"):  # only .aux and .log slip in
            (tree / "task" / name).unlink()
        gitignore_then_tex = [("task", 2), (".gitignore", 3)]
    for what, number in gitignore_then_tex:
        if what == ".gitignore":
            (tree / ".gitignore").write_text(variant.gitignore, encoding="utf-8")
            commit(tree, number, authors[number], messages[number], [".gitignore"])
        else:
            for path, text in variant.figures.items():
                (tree / path).write_text(text, encoding="utf-8")
            commit(tree, number, authors[number], messages[number], ["task", *variant.figures])
    nbformat.write(execute(nb, tree), tree / NOTEBOOK)
    commit(tree, 4, authors[4], messages[4], [NOTEBOOK])
    return tree


def _one_upload(variant: Variant, nb: nbformat.NotebookNode, tree: Path) -> Path:
    """All the work done locally and uploaded in one commit on top of the template."""
    (tree / "README.md").write_text(variant.readme, encoding="utf-8")
    (tree / "read_me.txt").unlink()
    (tree / "task" / "task1.tex").write_text(variant.tex, encoding="utf-8")
    (tree / ".gitignore").write_text(variant.gitignore, encoding="utf-8")
    nbformat.write(execute(nb, tree), tree / NOTEBOOK)
    commit(tree, 0, variant.authors[0], variant.messages[0], ["."])
    return tree


def store(variant: Variant, tree: Path) -> None:
    folder = SOLUTIONS / variant.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if variant.without_git:  # what a file manager's "compress" makes when it leaves hidden folders out
        with zipfile.ZipFile(folder / "repo.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(p for p in tree.rglob("*") if p.is_file() and ".git" not in p.relative_to(tree).parts):
                zf.writestr(zipfile.ZipInfo(path.relative_to(tree).as_posix(), (2025, 11, 10, 16, 30, 0)),
                            path.read_bytes())
    else:
        git(tree, "bundle", "create", "-q", str(folder / "repo.bundle"), "--all")
    lines = [f"description = {_toml(variant.description)}", f'verdict = "{"fail" if variant.failed else "pass"}"',
             "failed = [" + ", ".join(_toml(f) for f in variant.failed) + "]"]
    if variant.upload != "zip":
        lines.append(f"upload = {_toml(variant.upload)}")
    if variant.zip_folder:
        lines.append(f"zip_folder = {_toml(variant.zip_folder)}")
    (folder / "expected.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(names: list[str]) -> None:
    chosen = [v for v in VARIANTS if not names or v.name in names]
    with tempfile.TemporaryDirectory(prefix="task3-solutions-") as tmp:
        released = release(Path(tmp))
        template = template_history(Path(tmp))
        for variant in chosen:
            tree = build(variant, released, Path(tmp), template)
            store(variant, tree)
            print(f"{variant.name}: {git(tree, 'rev-list', '--count', 'HEAD').strip()} commits")


if __name__ == "__main__":
    main(sys.argv[1:])
