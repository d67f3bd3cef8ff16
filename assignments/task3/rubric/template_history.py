"""The staff's template repository (template.bundle beside this file): what every team starts from.

Read outside the sandbox, from our own bundle (tools/make_solutions.py writes it from template/), with git. The
team's work is every commit that is neither one of the template's commits nor one that merely adds template
files unchanged (a repository started from a fresh root that re-adds the template, recognised by content).
The history also holds earlier versions of the template (a read_me.txt of another year): a team that started
from one of them is asked for that version's structure.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

TEMPLATE_BUNDLE = Path(__file__).with_name("template.bundle")
READ_ME = "read_me.txt"


@dataclass(frozen=True)
class Template:
    """The template's commits and every file version (path, blob) its history holds."""

    commits: frozenset[str]
    contents: frozenset[tuple[str, str]]
    read_mes: tuple[tuple[str, str], ...] = ()  # (blob, text) of every read_me.txt version, oldest first

    def is_template_commit(self, commit: dict) -> bool:
        if commit.get("hash") in self.commits:
            return True
        changes = commit.get("changes") or []
        return bool(changes) and all(
            status in ("A", "M") and (path, blob) in self.contents for status, path, blob in changes
        )

    def team_commits(self, commits: list[dict]) -> list[dict]:
        """The commits that are the team's own work, newest first (as the facts list them)."""
        return [c for c in commits if not self.is_template_commit(c)]

    def read_me(self, commits: list[dict]) -> str:
        """The template's read_me.txt the team started from: the newest version of it the team's history (newest
        first, as the facts list them) added, else the template's current one. Only the staff's texts count."""
        texts = dict(self.read_mes)
        started = [blob for commit in reversed(commits) for status, path, blob in commit.get("changes") or []
                   if path == READ_ME and status in ("A", "M") and blob in texts]
        return texts[started[-1]] if started else (self.read_mes[-1][1] if self.read_mes else "")

    def holds(self, path: str, blob: str | None) -> bool:
        """Whether this file, with exactly this content, is the template's."""
        return blob is not None and (path, blob) in self.contents


@functools.cache
def load_template() -> Template:
    """The template's history from template.bundle; raises if it cannot be read (the grader's fault)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent"}
    with tempfile.TemporaryDirectory(prefix="task3-template-") as tmp:
        bare = Path(tmp) / "template.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(TEMPLATE_BUNDLE), str(bare)], env=env, check=True,
                       capture_output=True, timeout=60)
        log = subprocess.run(["git", "-c", "core.quotePath=false", "log", "--all", "--raw", "--no-abbrev",
                              "--no-renames", "--reverse", "--format=%x1e%H"], cwd=bare, env=env, check=True,
                             capture_output=True, text=True, timeout=60).stdout
        commits, contents = _history(log)
        read_mes = tuple((blob, subprocess.run(["git", "cat-file", "blob", blob], cwd=bare, env=env, check=True,
                                               capture_output=True, timeout=60).stdout.decode("utf-8", "replace"))
                         for path, blob in _ordered(log) if path == READ_ME)
    return Template(frozenset(commits), frozenset(contents), read_mes)


def _ordered(log: str) -> list[tuple[str, str]]:
    """(path, blob) of every file version the log adds or changes, oldest first, each once."""
    seen: dict[tuple[str, str], None] = {}
    for line in log.splitlines():
        if line.startswith(":") and "\t" in line:
            meta, path = line[1:].split("\t", 1)
            if meta.split()[4] in ("A", "M"):
                seen.setdefault((path, meta.split()[3]))
    return list(seen)


def _history(log: str) -> tuple[set[str], set[tuple[str, str]]]:
    commits, contents = set(), set()
    for record in log.split("\x1e"):
        lines = record.strip("\n").split("\n")
        if not lines[0]:
            continue
        commits.add(lines[0].strip())
        for line in lines[1:]:
            if line.startswith(":") and "\t" in line:
                meta, path = line[1:].split("\t", 1)
                contents.add((path, meta.split()[3]))
    return commits, contents
