"""Winnowing fingerprints (as in MOSS): normalised tokens, k-gram hashes, and the minimum of each window.

Python code is tokenized with `tokenize` and normalised so that what a copier changes cheaply does not hide
the copy: comments, docstrings and whitespace are dropped, and every name the student's code defines
(variables, functions, classes, parameters, attributes it assigns) becomes one placeholder wherever it
appears, so renamed variables still match, while the names of library code (imported names, their methods
and keyword arguments, builtins) stay, which keeps independent solutions apart. Prose and other code (LaTeX,
Markdown, shell) becomes lower-case words and symbols. Pure functions over text: nothing here reads files or
runs anything.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import io
import keyword
import re
import tokenize
from dataclasses import dataclass

K = 5  # tokens per k-gram: shorter matches are noise (idioms like `plt.show()`)
WINDOW = 4  # winnowing window: any match of K + WINDOW - 1 tokens is sure to share a fingerprint

_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) - {"_"}
_BUILTINS = frozenset(dir(builtins))
_ASSIGNMENTS = {"=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", "@=", "&=", "|=", "^=", ">>=", "<<="}
_PLACEHOLDER = "V"
_WORD = re.compile(r"\w+|[^\w\s]")
_SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
_STATEMENT_START = {tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.ENCODING, None}


@dataclass(frozen=True)
class Token:
    text: str
    line: int  # 1-based line of the unit it came from


@dataclass(frozen=True)
class Fingerprint:
    hash: int
    first_line: int
    last_line: int


def python_tokens(source: str, defined: frozenset[str] | None = None) -> list[Token]:
    """Normalised tokens of Python (cell) source; `defined`: the names the student's code defines (default: those
    this source defines; pass those of the whole notebook for a cell). IPython magics are dropped, unparsable
    code falls back to words."""
    raw = _raw_tokens(source)
    if raw is None:
        return _strip_comments_and_words(_code_lines(source))
    return _normalise(raw, defined_names([source]) if defined is None else defined)


def _code_lines(source: str) -> list[str]:
    return ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]


@functools.lru_cache(maxsize=1024)  # a notebook's cells are tokenized for their names, then for their tokens
def _raw_tokens(source: str) -> tuple[tokenize.TokenInfo, ...] | None:
    try:
        return tuple(tokenize.generate_tokens(io.StringIO("\n".join(_code_lines(source)) + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None


def defined_names(sources: list[str]) -> frozenset[str]:
    """Names the code defines: assignment targets (attributes too), def/class names, parameters, loop, `as`,
    lambda and walrus names; names bound by imports are not among them (they name library code)."""
    names: set[str] = set()
    for source in sources:
        for statement in _statements(_raw_tokens(source) or ()):
            names |= _defined_in(statement)
    return frozenset(names - _KEYWORDS)


def _statements(raw: tuple[tokenize.TokenInfo, ...]) -> list[list[tokenize.TokenInfo]]:
    statements, current = [], []
    for tok in raw:
        if tok.type == tokenize.NEWLINE or (tok.type == tokenize.OP and tok.string == ";"):
            statements.append(current)
            current = []
        elif tok.type not in _SKIPPED:
            current.append(tok)
    return [s for s in statements + [current] if s]


def _defined_in(statement: list[tokenize.TokenInfo]) -> set[str]:
    texts = [t.string for t in statement]
    if texts[0] in ("import", "from"):
        return set()
    names: set[str] = set()
    depth, binding_until = 0, None
    for index, tok in enumerate(statement):
        before = texts[index - 1] if index else ""
        after = texts[index + 1] if index + 1 < len(texts) else ""
        if tok.type == tokenize.OP:
            depth += tok.string in "([{"
            depth -= tok.string in ")]}"
            if depth == 0 and tok.string in _ASSIGNMENTS and binding_until is None:
                names |= {t.string for t in statement[:index] if t.type == tokenize.NAME}
            continue
        if tok.type != tokenize.NAME:
            continue
        if tok.string in ("for", "lambda"):
            binding_until = "in" if tok.string == "for" else ":"
        elif binding_until is not None and tok.string == binding_until:
            binding_until = None
        elif binding_until is not None or before in ("def", "class", "as") or after == ":=":
            names.add(tok.string)
        elif texts[0] == "def" and depth == 1 and before in ("(", ",", "*", "**") and after in (",", ")", "=", ":"):
            names.add(tok.string)  # a parameter
    return names


def _normalise(raw: tuple[tokenize.TokenInfo, ...], defined: frozenset[str]) -> list[Token]:
    imported = _imported_names(raw)
    tokens: list[Token] = []
    previous_kind, previous_text, depth = None, "", 0
    for index, tok in enumerate(raw):
        if tok.type in _SKIPPED:
            if tok.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                previous_kind, previous_text = tok.type, ""
            continue
        following = _next_significant(raw, index)
        if tok.type == tokenize.STRING and previous_kind in _STATEMENT_START and following in ("\n", ""):
            continue  # a docstring or a bare string statement: prose, not code
        if tok.type == tokenize.OP:
            depth += tok.string in "([{"
            depth -= tok.string in ")]}"
        tokens.append(Token(_shown(tok, previous_text, following, depth, imported, defined), tok.start[0]))
        previous_kind, previous_text = tok.type, tok.string
    return tokens


def _shown(tok: tokenize.TokenInfo, previous: str, following: str, depth: int, imported: set[str],
           defined: frozenset[str]) -> str:
    if tok.type != tokenize.NAME or tok.string in _KEYWORDS:
        return tok.string
    if tok.string in defined and tok.string not in imported:
        return _PLACEHOLDER
    kept = (tok.string in _BUILTINS or tok.string in imported or previous == "."
            or (depth > 0 and following == "="))  # a library's method or keyword argument
    return tok.string if kept else _PLACEHOLDER


def _next_significant(raw: tuple[tokenize.TokenInfo, ...], index: int) -> str:
    for tok in raw[index + 1:]:
        if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            return "\n" if tok.type == tokenize.NEWLINE else ""
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            return tok.string
    return ""


def _imported_names(raw: tuple[tokenize.TokenInfo, ...]) -> set[str]:
    """Names bound by `import` statements (`np`, `KMeans`): they name library code, so a copier keeps them."""
    names: set[str] = set()
    in_import = False
    for tok in raw:
        if tok.type == tokenize.NEWLINE:
            in_import = False
        elif tok.type == tokenize.NAME and tok.string in ("import", "from"):
            in_import = True
        elif in_import and tok.type == tokenize.NAME:
            names.add(tok.string)
    return names


def _strip_comments_and_words(lines: list[str]) -> list[Token]:
    return [Token(word, number) for number, line in enumerate(lines, 1)
            for word in _WORD.findall(line.split("#", 1)[0])]


def word_tokens(text: str) -> list[Token]:
    """Lower-case words and symbols of prose or non-Python code (LaTeX, Markdown, shell)."""
    return [Token(word.lower(), number) for number, line in enumerate(text.splitlines(), 1)
            for word in _WORD.findall(line)]


def kgram_hashes(tokens: list[Token], k: int = K) -> list[Fingerprint]:
    """The hash of every k-gram with the lines it spans (a unit shorter than k gives one, if any tokens)."""
    if not tokens:
        return []
    spans = [tokens[i:i + k] for i in range(max(1, len(tokens) - k + 1))]
    return [Fingerprint(_hash(" ".join(t.text for t in span)), span[0].line, span[-1].line) for span in spans]


def winnow(hashes: list[Fingerprint], window: int = WINDOW) -> list[Fingerprint]:
    """The minimum hash of each window of `window` k-grams (rightmost on ties), each chosen position once."""
    if len(hashes) <= window:
        return [min(hashes, key=lambda f: f.hash)] if hashes else []
    chosen: dict[int, Fingerprint] = {}
    for start in range(len(hashes) - window + 1):
        span = hashes[start:start + window]
        offset = min(range(window), key=lambda i: (span[i].hash, -i))
        chosen[start + offset] = span[offset]
    return [chosen[position] for position in sorted(chosen)]


def _hash(text: str) -> int:
    # Stable across processes (Python's hash() is salted per process).
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


__all__ = ["Fingerprint", "K", "Token", "WINDOW", "defined_names", "kgram_hashes", "python_tokens", "winnow",
           "word_tokens"]
