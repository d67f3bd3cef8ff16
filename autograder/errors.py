"""The grader's exceptions: one tree, each a failure of the grader itself (never of a student).

* GraderError
  + ConfigError       grader.toml is missing, malformed or inconsistent
  + ArchiveError      a Moodle ZIP or worksheet cannot be imported
  + SandboxError      a sandbox backend cannot be set up or started
  + RubricError       a rubric cannot be run or its report is unreadable
  + GradebookError    nbgrader's gradebook cannot be written
  + ExportError       a worksheet or feedback archive cannot be written

A student's failure (a raising cell, a timeout, an OOM kill, a missing plot) is data: it is recorded as a
criterion result, never raised. Each message is one line that names the file, key or participant concerned.
"""

from __future__ import annotations


class GraderError(Exception):
    """Raised when the grader cannot do its job; the CLI prints the message as one line."""


class ConfigError(GraderError):
    """Raised when grader.toml is missing, unreadable, has an unknown key, a wrong type or a missing task."""


class ArchiveError(GraderError):
    """Raised when a Moodle ZIP or worksheet is unsafe, corrupt or not in a Moodle layout; nothing is imported."""


class SandboxError(GraderError):
    """Raised when a sandbox backend is unknown, unavailable or fails to start (not when student code fails)."""


class RubricError(GraderError):
    """Raised when a task's rubric cannot be collected or run, or writes an invalid report."""


class GradebookError(GraderError):
    """Raised when nbgrader's gradebook cannot be opened or updated."""


class ExportError(GraderError):
    """Raised when a worksheet cannot be read or filled, or a feedback archive cannot be written."""
