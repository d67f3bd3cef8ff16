"""Regrade one submission from the review page: the same pipeline as `grader grade --only P --force`."""

from __future__ import annotations

import threading
from typing import Callable

from sqlalchemy.engine import Engine

from autograder.config import Config


def regrader(config: Config, engine: Engine) -> Callable[[str, str], None]:
    """A function (task, participant) that grades that participant's current submission again, synchronously.

    One regrade at a time: two at once would share the first worker's sandbox uid slot.
    """
    one_at_a_time = threading.Lock()

    def regrade(task: str, participant: str) -> None:
        with one_at_a_time:
            _grade_one(config, engine, task, participant)

    return regrade


def _grade_one(config: Config, engine: Engine, task: str, participant: str) -> None:
    """`grader grade TASK --only PARTICIPANT --force`, with one worker."""
    from autograder.execute import ensure_sandbox_ready
    from autograder.grade import grade_task
    from autograder.placement import Placer

    task_config = config.task(task)
    placer = Placer(config)
    for sandbox in placer.sandboxes(task_config):
        ensure_sandbox_ready(sandbox)
    grade_task(config, task_config, engine, placer, workers=1, only=[participant], force=True)
