"""The student's self-check: `grader release` publishes what it needs, `grader check` runs it.

`publish` writes the public part of a task next to the released notebooks (release/TASK/selfcheck/): the rubric
files with at least one public criterion, the public probes and facts command, the task's settings and the list
of criteria only the official grading decides. `run` executes a student's files the way the official grading
does (sandbox where one can be built, else a plain local kernel, `local`), judges the public criteria only and
checks the upload itself (`upload`). Hidden material (hidden/, probe-data/, probes that read held-out inputs)
is never published, and a public-only rubric run deselects every test that needs it (autograder.rubric.is_hidden).
"""

from autograder.selfcheck.publish import SELFCHECK_FOLDER, publish_selfcheck
from autograder.selfcheck.run import CheckReport, check_upload, find_release

__all__ = ["SELFCHECK_FOLDER", "CheckReport", "check_upload", "find_release", "publish_selfcheck"]
