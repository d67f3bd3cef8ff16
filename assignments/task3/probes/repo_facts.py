"""Facts of task 3, measured by the grader's own command: `python -I /grader/facts.py INPUT_DIR [NOTEBOOK]`.

Runs in a fresh sandbox of its own, over the submission as uploaded (INPUT_DIR, read-only), in a process that
loads no student code: the notebook is read as JSON and never executed. Standard library only; git, latexmk and
pdflatex run as subprocesses: git with hooks and fsmonitor off and no global or system config, latexmk without
any latexmkrc. task/task1.tex is built as on a student's machine, with shell escape (\includesvg runs Inkscape):
in this sandbox that runs nothing the notebook could not run itself, and this process's stdout, the only channel
back, is out of its reach (see _private_stdout and _make_undumpable); the notebook's formulas are set without
shell escape. NOTEBOOK ("" or left out when the task has none or none was
handed in) is the uploaded notebook; the repository is the one holding it, else the shallowest folder of the upload
with a `.git`, else the one `*.bundle` beside the notebook or in the upload (cloned first). Every text is capped. It holds no
expected value; the rubric (rubric/test_repository.py) judges what it prints.

Prints one JSON document on stdout (the only channel back): repository (bool), error, commit_count, commits
[{hash, author, email, subject, changes [[status, path, blob]]}], files (tracked paths), blobs {path: blob},
ignored (which LaTeX build files of task/task1.tex the committed .gitignore ignores), latex {found, ok, timed_out, errors, source}, readme {name, text}, formulas
[{cell, given, kind, tex, ok, error}], formula_error.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_COMMITS, MAX_FILES, MAX_TEXT, MAX_CHANGES = 300, 3000, 64_000, 200
MAX_FORMULAS, FORMULA_TIMEOUT, LATEX_TIMEOUT = 40, 20, 90
TEX_FILE = "task/task1.tex"
BUILD_SUFFIXES = (".aux", ".log", ".synctex.gz", ".fls", ".fdb_latexmk", ".out", ".toc", ".pdf")
GIT = ["git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null", "-c", "safe.directory=*",
       "-c", "protocol.file.allow=always", "-c", "core.quotePath=false"]
MATH = re.compile(
    r"\$\$(?P<display>.+?)\$\$|\\\[(?P<bracket>.+?)\\\]|\\\((?P<paren>.+?)\\\)"
    r"|(?P<env>\\begin\{(?P<name>[A-Za-z]+\*?)\}.*?\\end\{(?P=name)\})"
    r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?!\$)",
    re.S,
)
MATH_ENVIRONMENTS = {"equation", "align", "gather", "multline", "eqnarray", "flalign", "alignat", "displaymath", "math"}
DISPLAY_ENVIRONMENT = re.compile(r"\\begin\{(equation|align|gather|multline|eqnarray|flalign|alignat)\*?\}")


class Tools:
    """git and TeX as subprocesses in a private work folder, with a clean environment."""

    def __init__(self, work: Path, input_dir: Path) -> None:
        self.work = work
        # The upload belongs to another uid; git's own children (upload-pack of a clone) read only global config.
        global_config = work / "gitconfig"
        global_config.write_text("[safe]\n\tdirectory = *\n", encoding="utf-8")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "HOME": str(work), "TEXMFVAR": str(work / "texmf-var"), "TEXMFCONFIG": str(work / "texmf-config"),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(global_config), "GIT_TERMINAL_PROMPT": "0",
            # Never look for a repository above the upload.
            "GIT_CEILING_DIRECTORIES": str(input_dir.parent),
        }

    def run(self, argv: list[str], cwd: Path, timeout: float = 60) -> tuple[int | None, str]:
        """(exit code or None on timeout, output text); the whole process group dies at the timeout."""
        proc = subprocess.Popen(argv, cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return None, out.decode("utf-8", "replace")

    def git(self, *args: str, cwd: Path, timeout: float = 60) -> tuple[int | None, str]:
        return self.run([*GIT, *args], cwd, timeout)


def measure(input_dir: Path, notebook: str) -> dict:
    """Every fact of the submission: the repository's (if there is one) and the notebook's formulas."""
    work = Path(tempfile.mkdtemp(prefix="grader-task3-"))
    tools = Tools(work, input_dir)
    facts: dict = {"repository": False}
    try:
        repository_facts(tools, (input_dir / notebook).parent if notebook else input_dir, facts)
    except Exception as exc:  # noqa: BLE001 - report what went wrong instead of nothing
        facts["error"] = f"{type(exc).__name__}: {exc}"[:500]
    if not notebook:
        facts["formulas"] = []
        return facts
    try:
        facts["formulas"] = compiled_formulas(tools, notebook_formulas(input_dir / notebook))
    except Exception as exc:  # noqa: BLE001 - the notebook is the student's; report what went wrong
        facts["formulas"] = []
        facts["formula_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return facts


def repository_facts(tools: Tools, folder: Path, facts: dict) -> None:
    """Everything git and latexmk tell about the committed repository (nothing without one)."""
    top = _repository(tools, folder)
    if top is None:
        facts["error"] = "no git repository"
        return
    facts["repository"] = True

    # History of HEAD.
    _, count = tools.git("rev-list", "--count", "HEAD", cwd=top)
    facts["commit_count"] = int(count.strip()) if count.strip().isdigit() else 0
    _, log = tools.git("log", f"-n{MAX_COMMITS}", "--no-renames", "--raw", "--no-abbrev",
                       "--format=%x1e%H%x1f%an%x1f%ae%x1f%s", "HEAD", cwd=top)
    facts["commits"] = [commit for record in log.split("\x1e") if (commit := _commit(record))]

    # The committed state: a fresh clone, so nothing untracked or ignored takes part.
    clone = tools.work / "clone"
    code, out = tools.git("clone", "-q", "--no-hardlinks", str(top), str(clone), cwd=tools.work, timeout=120)
    if code != 0:
        facts["error"] = f"git clone: {out.strip()[:500]}"
        return
    _, staged = tools.git("ls-files", "-s", "-z", cwd=clone)
    entries = [entry.split("\t", 1) for entry in staged.split("\0") if "\t" in entry][:MAX_FILES]
    facts["files"] = [path[:300] for _, path in entries]
    facts["blobs"] = {path[:300]: meta.split()[1][:40] for meta, path in entries if len(meta.split()) == 3}
    stem = TEX_FILE[: -len(".tex")]
    candidates = [stem + suffix for suffix in BUILD_SUFFIXES]
    _, ignored = tools.git("check-ignore", "--no-index", *candidates, cwd=clone)
    facts["ignored"] = sorted(set(ignored.split()) & set(candidates))
    # README before LaTeX runs: nothing a document writes can change it.
    readme = next((p for p in sorted(clone.iterdir()) if p.is_file() and p.name.lower() == "readme.md"), None)
    facts["readme"] = ({"name": readme.name, "text": readme.read_text(encoding="utf-8", errors="replace")[:MAX_TEXT]}
                       if readme else None)
    facts["latex"] = _latex(tools, clone / TEX_FILE)


def _commit(record: str) -> dict | None:
    """One commit of `git log --raw`: who, what message, and what it changed ([status, path, blob])."""
    lines = record.strip("\n").split("\n")
    parts = lines[0].split("\x1f")
    if len(parts) != 4:
        return None
    changes = []
    for line in lines[1:]:
        if line.startswith(":") and "\t" in line:
            meta, path = line[1:].split("\t", 1)
            fields = meta.split()
            if len(fields) == 5:
                changes.append([fields[4][:1], path[:300], fields[3][:40]])
    return {"hash": parts[0][:40], "author": parts[1][:200], "email": parts[2][:200], "subject": parts[3][:300],
            "changes": changes[:MAX_CHANGES]}


def _repository(tools: Tools, folder: Path) -> Path | None:
    """The top of the uploaded repository holding `folder` (the notebook's, or the upload's), else of the
    shallowest one inside it, else of the one bundle beside the notebook or in the upload, cloned here."""
    for start in [folder, *_folders_with(folder, ".git")]:
        code, top = tools.git("rev-parse", "--show-toplevel", cwd=start)
        if code == 0 and top.strip():
            return Path(top.strip())
    bundles = sorted(p for p in folder.glob("*.bundle") if p.is_file() and not p.is_symlink())
    for shallowest in _folders_with(folder, "*.bundle")[:1] if not bundles else []:
        bundles = sorted(p for p in shallowest.glob("*.bundle") if p.is_file() and not p.is_symlink())
    if len(bundles) != 1:
        return None
    target = tools.work / "bundle"
    code, _ = tools.git("clone", "-q", str(bundles[0]), str(target), cwd=tools.work, timeout=120)
    return target if code == 0 else None


def _folders_with(root: Path, pattern: str) -> list[Path]:
    """Folders under root (never inside a .git) holding an entry named like pattern, shallowest first."""
    found = []
    for folder, dirs, files in os.walk(root):
        if any(Path(name).match(pattern) for name in [*dirs, *files]):
            found.append(Path(folder))
        dirs[:] = [d for d in dirs if d != ".git"]
    return sorted(found, key=lambda f: (len(f.parts), str(f)))


def _latex(tools: Tools, source: Path) -> dict:
    """task/task1.tex of the committed state, compiled where it lies."""
    latex = {"found": source.is_file(), "ok": False, "timed_out": False, "errors": "", "source": ""}
    if not latex["found"]:
        return latex
    latex["source"] = source.read_text(encoding="utf-8", errors="replace")[:MAX_TEXT]
    code, out = tools.run(["latexmk", "-norc", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
                           "-pdflatex=pdflatex -shell-escape %O %S", source.name], source.parent,
                          timeout=LATEX_TIMEOUT)
    latex["timed_out"] = code is None
    latex["ok"] = code == 0 and source.with_suffix(".pdf").is_file()
    if not latex["ok"]:
        log_text = _read(source.with_suffix(".log"))
        latex["errors"] = tex_errors(log_text) or _without_noise(out.strip()[-1500:])
        latex["first_error"] = first_error(log_text)
    return latex


def first_error(log_text: str) -> dict:
    """The first real error of a TeX log: TeX's message (noise removed), the line TeX names ('l.<n> …'), and
    the file it did not find (a package's .sty/.cls, an image), if that is the error; {} when there is none."""
    lines = _without_noise(log_text).splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("!"):
            continue
        message = line.lstrip("! ").strip()
        for follow in lines[index + 1:index + 4]:  # TeX wraps long messages at 79 columns
            if not follow.strip() or follow.startswith(("l.", "See ", "Type ", "!")):
                break
            if len(line) >= 79:
                message += follow.strip()
                line = follow
        at = next((m for f in lines[index + 1:index + 20] if (m := re.match(r"l\.(\d+) ?(.*)", f))), None)
        missing = re.search(r"File `([^']+)' not found", message)
        return {"message": message[:400], "line": int(at.group(1)) if at else None,
                "context": at.group(2).strip()[:160] if at else "", "missing": missing.group(1)[:200] if missing else ""}
    return {}


def _without_noise(text: str) -> str:
    """TeX's output without what only confuses a reader: ^^M (Windows line ends), the repeated stop notices."""
    text = text.replace("^^M", "")
    return "\n".join(line for line in text.splitlines()
                     if not re.match(r"!\s*(Emergency stop|==> Fatal error occurred)", line.strip()))


def tex_errors(log_text: str) -> str:
    """The first errors of a TeX log: each '!' line with the 'l.<n> ...' line that says where it was."""
    lines, found = _without_noise(log_text).splitlines(), []
    for index, line in enumerate(lines):
        if line.startswith("!") and "==> Fatal error occurred" not in line:
            found.append(line)
            found += [f for f in lines[index + 1:index + 12] if re.match(r"l\.\d+ ", f)][:1]
        if len(found) >= 8:
            break
    return "\n".join(found)[:2000]


def notebook_formulas(path: Path) -> list[dict]:
    """The formulas of the uploaded notebook's Markdown cells, read as JSON (never executed)."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    formulas = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
            continue
        text = cell.get("source", "")
        text = "".join(map(str, text)) if isinstance(text, list) else str(text)
        text = re.sub(r"(?ms)^(```|~~~).*?^\1", "", text)  # code blocks and inline code hold no formulas
        text = re.sub(r"`[^`\n]*`", "", text)
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell.get("metadata"), dict) else {}
        given = bool(meta.get("locked")) and not meta.get("solution") if isinstance(meta, dict) else False
        for match in MATH.finditer(text):
            if match.group("env") and match.group("name").rstrip("*") not in MATH_ENVIRONMENTS:
                continue
            kind = next(k for k in ("display", "bracket", "paren", "env", "inline") if match.group(k) is not None)
            formulas.append({"cell": index, "given": given, "kind": kind, "tex": match.group(0)[:400],
                             "body": match.group(0)[:20_000]})
    return formulas


def compiled_formulas(tools: Tools, formulas: list[dict]) -> list[dict]:
    """Each formula the student wrote with ok/error: all in one document first (one pdflatex run); only if
    that fails, each on its own to find which."""
    pending = [f for f in formulas if not f["given"]][:MAX_FORMULAS]
    if pending:
        ok, _ = _compile(tools, "formulas", [_latex_body(f) for f in pending])
        for number, formula in enumerate(pending):
            formula["ok"], formula["error"] = (True, "") if ok else _compile(tools, f"formula{number}",
                                                                             [_latex_body(formula)])
    for formula in formulas:
        formula.pop("body", None)
    return formulas[:200]


def _compile(tools: Tools, name: str, bodies: list[str]) -> tuple[bool, str]:
    """(ok, first errors) of one small LaTeX document setting these formulas, each in its own paragraph."""
    folder = tools.work / "formulas"
    folder.mkdir(exist_ok=True)
    document = folder / f"{name}.tex"
    document.write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
                        + "\n\n".join(bodies) + "\n\\end{document}\n", encoding="utf-8")
    code, out = tools.run(["pdflatex", "-draftmode", "-no-shell-escape", "-interaction=nonstopmode",
                           "-halt-on-error", document.name], folder, timeout=FORMULA_TIMEOUT)
    if code == 0:
        return True, ""
    log_text = _read(document.with_suffix(".log")) or out
    return False, tex_errors(log_text)[:400] or ("Zeitlimit überschritten" if code is None else "")


def _latex_body(formula: dict) -> str:
    body = formula["body"]
    if formula["kind"] == "display":  # $$...$$; MathJax also takes a whole environment between the $$
        inner = body[2:-2].strip()
        body = inner if DISPLAY_ENVIRONMENT.match(inner) else "\\[" + inner + "\\]"
    return body


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def _private_stdout():
    """Keep the real stdout for the facts; any tool that writes to fd 1 writes to stderr instead."""
    sys.stdout.flush()
    private = os.dup(1)  # not inherited by the subprocesses
    os.dup2(2, 1)
    return os.fdopen(private, "wb")


def _make_undumpable() -> None:
    """PR_SET_DUMPABLE=0: TeX or git (same uid) can no longer open /proc/<this pid>/fd/*."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    channel = _private_stdout()
    _make_undumpable()
    if len(argv) not in (1, 2):
        print("usage: facts.py INPUT_DIR [NOTEBOOK]", file=sys.stderr)
        return 2
    facts = measure(Path(argv[0]), argv[1] if len(argv) == 2 else "")
    channel.write(json.dumps(facts).encode("utf-8"))
    channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
