"""The rubric worker: one long-lived process that runs a task's rubric for one submission after another.

`python -m autograder.rubric_worker FOLDER` imports pytest and, by collecting the rubric once, whatever it imports
(numpy, pandas, scikit-learn: seconds), answers `{"ready": true}`, then serves requests, one JSON line each on
stdin (`{"args": [...]}`, the rubric's pytest command line: autograder.check), by running `pytest.main`
in-process and answering `{"exit": CODE}` (pytest's exit code) on its own line on stdout. The criteria go to the
report file the autograder.rubric plugin writes, as from a process of their own. Like that process it reads only
the checked files of the executions: it loads no student code. After each request the rubric's own modules (test
files, conftest, helpers under FOLDER) leave sys.modules, so nothing one submission left in them reaches the next
(nor in sys.path, the working directory or the environment).

Started, timed and killed by autograder.rubric_pool; a fault ends or abandons the process, never the grading.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def serve(folder: Path) -> None:
    """Warm up, then answer requests until stdin closes."""
    requests, answers = _private_channel()
    _run(folder, [str(folder), "--collect-only", "-q", "-p", "autograder.rubric", "-p", "no:cacheprovider",
                  "-p", "no:randomly", f"--rootdir={folder}", "-c", os.devnull])
    _freeze_libraries()
    _answer(answers, {"ready": True})
    served = 0
    while line := requests.readline():
        code = _run(folder, [str(arg) for arg in json.loads(line)["args"]])
        served += 1
        if served == 1:  # what the rubric loads lazily is loaded now
            _freeze_libraries()
        _answer(answers, {"exit": int(code)})


def _run(folder: Path, args: list[str]) -> int:
    with _fresh_afterwards(folder):
        return int(pytest.main(args))


@contextmanager
def _fresh_afterwards(folder: Path) -> Iterator[None]:
    """Leave the process as it was for the next submission: the rubric's modules forgotten, and sys.path, the
    working directory and the environment as they were (a rubric may change any of them)."""
    modules, path, cwd, environ = set(sys.modules), list(sys.path), os.getcwd(), dict(os.environ)
    try:
        yield
    finally:
        _forget_rubric_modules(folder, modules)
        sys.path[:] = path
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)


def _answer(answers, message: dict) -> None:
    answers.write(json.dumps(message) + "\n")
    answers.flush()


def _freeze_libraries() -> None:
    """Keep the garbage collector off what the libraries hold: pytest collects garbage at the end of each session
    (several full passes), which over pandas, scikit-learn and matplotlib costs about 0.5 s a submission."""
    gc.collect()
    gc.freeze()


def _private_channel():
    """The requests and answers on private copies of stdin and stdout; fd 0 reads /dev/null and fd 1 writes to the
    log (stderr), so neither pytest's report lines, nor a rubric's print, nor a program it starts can touch them."""
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    return requests, answers


def _forget_rubric_modules(folder: Path, before: set[str]) -> None:
    """Drop the modules this request imported from the rubric folder; what else it imported (libraries) stays."""
    roots = {os.path.join(os.path.abspath(folder), ""), os.path.join(os.path.realpath(folder), "")}
    for name in set(sys.modules) - before:
        file = getattr(sys.modules.get(name), "__file__", None) or ""
        if any(os.path.realpath(file).startswith(root) or os.path.abspath(file).startswith(root) for root in roots):
            del sys.modules[name]


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
