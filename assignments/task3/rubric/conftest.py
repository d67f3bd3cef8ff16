"""Task 3 as configured: without a notebook in grader.toml (the repository alone is the upload), the rubric's
notebook criteria (those that read `nb`) are not part of the task and are not reported at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    manifest = config.getoption("--grader-manifest", default=None)
    if not manifest:
        return
    parts = json.loads(Path(manifest).read_text(encoding="utf-8")).get("notebooks", {})
    if parts.get("repo", {}).get("file"):
        return
    dropped = [item for item in items if "nb" in item.fixturenames]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]
