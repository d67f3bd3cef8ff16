"""What it takes to call nbgrader's Python API from the grader: quiet logs and alembic on PATH."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def nbgrader_environment() -> Iterator[None]:
    """nbgrader runs `alembic` from PATH when it creates a gradebook, and logs and warns freely: give it
    this environment's bin folder, and keep its SQLAlchemy warnings and INFO logs out of our output."""
    logging.getLogger("traitlets").setLevel(logging.ERROR)
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{before}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        os.environ["PATH"] = before
