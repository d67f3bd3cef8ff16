"""The structure a plain text (the template's read_me.txt) has: what its conversion to Markdown must show.

Read by layout alone, as a reader sees it: a short line standing alone between blank lines is a section title;
lines indented by four spaces (or a tab) are code; a block of lines whose columns are aligned by runs of spaces
(or separated by | or tabs) is a table; a block of short lines that are not sentences (or start with a bullet) is
a list; an http(s) address is a link. Only what the text has is asked of the README.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+\S")
COLUMNS = re.compile(r"\S(?: {2,}|\t+|\s*\|\s*)\S")
LINK = re.compile(r"https?://|www\.", re.I)
MAX_TITLE, MAX_ITEM = 60, 90


@dataclass(frozen=True)
class Structure:
    sections: int
    lists: bool
    tables: bool
    code: bool
    links: bool


def structure_of(text: str) -> Structure:
    """What the plain text has, read by its layout."""
    blocks = _blocks(text.replace("\r\n", "\n").replace("\r", "\n"))
    code = any(all(_indented(line) for line in block) for block in blocks)
    plain = [block for block in blocks if not all(_indented(line) for line in block)]
    sections = sum(1 for block in plain if len(block) == 1 and _is_title(block[0]))
    tables = any(_is_table(block) for block in plain)
    lists = any(_is_list(block) for block in plain if not _is_table(block))
    return Structure(sections=sections, lists=lists, tables=tables, code=code, links=bool(LINK.search(text)))


def _blocks(text: str) -> list[list[str]]:
    """Runs of non-blank lines, separated by blank lines."""
    blocks, current = [], []
    for line in text.split("\n"):
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    return blocks + ([current] if current else [])


def _indented(line: str) -> bool:
    return line.startswith(("    ", "\t"))


def _is_title(line: str) -> bool:
    text = line.strip()
    return len(text) <= MAX_TITLE and not text.endswith((".", ":", ",", ";")) and not LINK.search(text)


def _is_table(block: list[str]) -> bool:
    """At least two rows, each with the same number (two or more) of aligned or separated columns."""
    counts = {len(COLUMNS.findall(line.strip())) for line in block}
    return len(block) >= 2 and len(counts) == 1 and counts.pop() >= 1


def _is_list(block: list[str]) -> bool:
    """At least two lines that are items: bulleted, or short and not sentences of a wrapped paragraph."""
    if len(block) < 2:
        return False
    if all(BULLET.match(line) for line in block):
        return True
    return all(len(line.strip()) <= MAX_ITEM and not line.rstrip().endswith((".", "!", "?")) for line in block)
