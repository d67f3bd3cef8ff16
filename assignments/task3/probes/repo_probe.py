"""Probe of task 3, run in the student's kernel (inside the sandbox) after the notebook: facts about the repository.

The notebook runs in a copy of the submitted repository (a bundle was already cloned there by the runner). This
cell asks git and TeX, through subprocesses, and reports plain JSON under the name "repository"; the rubric
judges it outside the sandbox. Everything git or TeX does here happens in the sandbox: git runs with hooks and
fsmonitor switched off and no global or system config, latexmk without any latexmkrc and pdflatex without shell
escape. Every text is capped. It holds no expected value.

Reported keys: repository (bool), error, commit_count, commits [{hash, author, email, subject}], files (tracked
paths), ignored (which LaTeX build files of task/task1.tex the committed .gitignore ignores), latex {found,
ok, timed_out, errors, source}, readme {name, text}, formulas [{cell, given, kind, tex, ok, error}].
"""


def _grader_task3_probe():
    import json
    import os
    import re
    import signal
    import subprocess
    import tempfile
    from pathlib import Path

    from autograder.inside.probe import report

    max_commits, max_files, max_text = 300, 3000, 64_000
    max_formulas, formula_timeout, latex_timeout = 40, 20, 90
    tex_file = "task/task1.tex"
    build_suffixes = (".aux", ".log", ".synctex.gz", ".fls", ".fdb_latexmk", ".out", ".toc", ".pdf")
    work = Path(tempfile.mkdtemp(prefix="grader-task3-"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": str(work), "TEXMFVAR": str(work / "texmf-var"), "TEXMFCONFIG": str(work / "texmf-config"),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0",
    }
    git = ["git", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null", "-c", "safe.directory=*",
           "-c", "protocol.file.allow=always", "-c", "core.quotePath=false"]

    def run(argv, cwd, timeout=60):
        """(exit code or None on timeout, stdout text); the whole process group dies at the timeout."""
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
            return proc.returncode, out.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return None, out.decode("utf-8", "replace")

    def tex_errors(log_text):
        """The first errors of a TeX log: each '!' line with the 'l.<n> ...' line that says where it was."""
        lines, found = log_text.splitlines(), []
        for index, line in enumerate(lines):
            if line.startswith("!") and "==> Fatal error occurred" not in line:
                found.append(line)
                found += [f for f in lines[index + 1:index + 12] if re.match(r"l\.\d+ ", f)][:1]
            if len(found) >= 8:
                break
        return "\n".join(found)[:2000]

    def repository_facts(facts):
        """Everything git and latexmk tell about the committed repository (nothing without one)."""
        code, top = run([*git, "rev-parse", "--show-toplevel"], os.getcwd())
        if code != 0:
            facts["error"] = top.strip()[:500] or "no git repository"
            return
        top = top.strip()
        facts["repository"] = True

        # History of HEAD.
        _, count = run([*git, "rev-list", "--count", "HEAD"], top)
        facts["commit_count"] = int(count.strip()) if count.strip().isdigit() else 0
        _, log = run([*git, "log", f"-n{max_commits}", "--format=%H%x1f%an%x1f%ae%x1f%s%x1e", "HEAD"], top)
        facts["commits"] = []
        for record in log.split("\x1e"):
            parts = record.strip("\n").split("\x1f")
            if len(parts) == 4:
                facts["commits"].append({"hash": parts[0][:40], "author": parts[1][:200], "email": parts[2][:200],
                                         "subject": parts[3][:300]})

        # The committed state: a fresh clone, so nothing untracked or ignored takes part.
        clone = work / "clone"
        code, out = run([*git, "clone", "-q", "--no-hardlinks", top, str(clone)], work, timeout=120)
        if code != 0:
            facts["error"] = f"git clone: {out.strip()[:500]}"
            return
        _, files = run([*git, "ls-files", "-z"], clone)
        facts["files"] = [f[:300] for f in files.split("\0") if f][:max_files]
        stem = tex_file[: -len(".tex")]
        candidates = [stem + suffix for suffix in build_suffixes]
        _, ignored = run([*git, "check-ignore", "--no-index", *candidates], clone)
        facts["ignored"] = sorted(set(ignored.split()) & set(candidates))

        # LaTeX: task/task1.tex of the committed state, compiled where it lies.
        latex = {"found": (clone / tex_file).is_file(), "ok": False, "timed_out": False, "errors": "", "source": ""}
        if latex["found"]:
            source = clone / tex_file
            latex["source"] = source.read_text(encoding="utf-8", errors="replace")[:max_text]
            code, out = run(["latexmk", "-norc", "-pdf", "-interaction=nonstopmode", "-halt-on-error",
                             "-pdflatex=pdflatex -no-shell-escape %O %S", source.name], source.parent, timeout=latex_timeout)
            latex["timed_out"] = code is None
            latex["ok"] = code == 0 and source.with_suffix(".pdf").is_file()
            if not latex["ok"]:
                log_file = source.with_suffix(".log")
                log_text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
                latex["errors"] = tex_errors(log_text) or out.strip()[-1500:]
        facts["latex"] = latex

        readme = next((p for p in sorted(clone.iterdir()) if p.is_file() and p.name.lower() == "readme.md"), None)
        facts["readme"] = ({"name": readme.name, "text": readme.read_text(encoding="utf-8", errors="replace")[:max_text]}
                           if readme else None)

    facts = {"repository": False}
    try:
        repository_facts(facts)
    except Exception as exc:  # noqa: BLE001 - report what went wrong instead of nothing
        facts["error"] = f"{type(exc).__name__}: {exc}"[:500]

    # Formulas of the notebook's Markdown cells (the uploaded notebook), each set in a LaTeX document of its own.
    math = re.compile(
        r"\$\$(?P<display>.+?)\$\$|\\\[(?P<bracket>.+?)\\\]|\\\((?P<paren>.+?)\\\)"
        r"|(?P<env>\\begin\{(?P<name>[A-Za-z]+\*?)\}.*?\\end\{(?P=name)\})"
        r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]*?[^\s$\\])?)\$(?!\$)",
        re.S,
    )
    environments = {"equation", "align", "gather", "multline", "eqnarray", "flalign", "alignat", "displaymath", "math"}
    formulas = []
    try:
        job = json.loads(Path("/grader/job.json").read_text(encoding="utf-8"))
        notebook = json.loads((Path(job["input_dir"]) / job["notebook"]).read_text(encoding="utf-8"))
        for index, cell in enumerate(notebook.get("cells", [])):
            if cell.get("cell_type") != "markdown":
                continue
            text = cell.get("source", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            text = re.sub(r"(?ms)^(```|~~~).*?^\1", "", text)  # code blocks and inline code hold no formulas
            text = re.sub(r"`[^`\n]*`", "", text)
            meta = cell.get("metadata", {}).get("nbgrader", {})
            given = bool(meta.get("locked")) and not meta.get("solution")
            for match in math.finditer(text):
                if match.group("env") and match.group("name").rstrip("*") not in environments:
                    continue
                kind = next(k for k in ("display", "bracket", "paren", "env", "inline") if match.group(k) is not None)
                formulas.append({"cell": index, "given": given, "kind": kind, "tex": match.group(0)[:400],
                                 "body": match.group(0)[:20_000]})
    except Exception as exc:  # noqa: BLE001 - the notebook is the student's; report what went wrong
        facts["formula_error"] = f"{type(exc).__name__}: {exc}"[:300]

    def compile_formulas(name, bodies):
        """(ok, first errors) of one small LaTeX document setting these formulas, each in its own paragraph."""
        document = work / f"{name}.tex"
        document.write_text("\\documentclass{article}\n\\usepackage{amsmath,amssymb}\n\\begin{document}\n"
                            + "\n\n".join(bodies) + "\n\\end{document}\n", encoding="utf-8")
        code, out = run(["pdflatex", "-draftmode", "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error",
                         document.name], work, timeout=formula_timeout)
        if code == 0:
            return True, ""
        log_file = document.with_suffix(".log")
        log_text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else out
        return False, tex_errors(log_text)[:400] or ("Zeitlimit überschritten" if code is None else "")

    def latex_body(formula):
        body = formula["body"]
        if formula["kind"] == "display":  # $$...$$; MathJax also takes a whole environment between the $$
            inner = body[2:-2].strip()
            starts_environment = re.match(r"\\begin\{(equation|align|gather|multline|eqnarray|flalign|alignat)\*?\}", inner)
            body = inner if starts_environment else "\\[" + inner + "\\]"
        return body

    # All of them in one document first (one pdflatex run); only if that fails, each on its own to find which.
    pending = [f for f in formulas if not f["given"]][:max_formulas]
    if pending:
        ok, _ = compile_formulas("formulas", [latex_body(f) for f in pending])
        for number, formula in enumerate(pending):
            formula["ok"], formula["error"] = (True, "") if ok else compile_formulas(f"formula{number}",
                                                                                    [latex_body(formula)])
    for formula in formulas:
        formula.pop("body", None)
    facts["formulas"] = formulas[:200]
    report("repository", facts)


_grader_task3_probe()
del _grader_task3_probe
