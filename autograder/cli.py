"""The `grader` command line: parse options, call one stage function, print the result. Nothing else.

Every failure of the grader (GraderError) is printed as one red line and ends with a documented exit code;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Optional

import click
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from autograder import errors
from autograder.config import Config, find_config, load_config


class ExitCode(enum.IntEnum):
    """Exit codes of `grader`. Never renumber: scripts depend on them."""

    OK = 0
    FINDINGS = 1  # the command worked and found problems (e.g. export --check)
    USAGE = 2  # bad command line (click's own code)
    CONFIG = 3  # grader.toml
    ARCHIVE = 4  # Moodle ZIP or worksheet
    SANDBOX = 5  # sandbox backend
    RUBRIC = 6  # a task's rubric
    GRADEBOOK = 7  # nbgrader's gradebook
    EXPORT = 8  # writing worksheet or feedback
    ERROR = 9  # any other GraderError


_EXIT_CODES = {
    errors.ConfigError: ExitCode.CONFIG,
    errors.ArchiveError: ExitCode.ARCHIVE,
    errors.SandboxError: ExitCode.SANDBOX,
    errors.RubricError: ExitCode.RUBRIC,
    errors.GradebookError: ExitCode.GRADEBOOK,
    errors.ExportError: ExitCode.EXPORT,
}

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class _GraderGroup(TyperGroup):
    """Turns a GraderError into one line on stderr and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except errors.GraderError as exc:
            err_console.print(Text.assemble(("error: ", "bold red"), str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            raise typer.Exit(code=int(_EXIT_CODES.get(type(exc), ExitCode.ERROR))) from None


app = typer.Typer(
    cls=_GraderGroup, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Grade Jupyter notebook tasks from a Moodle export in a sandbox, and hand the grades back to Moodle.",
)


@app.callback()
def _options(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="grader.toml to use (default: ./grader.toml or $GRADER_CONFIG)."),
) -> None:
    ctx.obj = find_config(config)


def _config(ctx: typer.Context) -> Config:
    return load_config(ctx.obj)


def _engine(config: Config):
    from autograder.models import open_database

    return open_database(config.database_url())


@app.command("import")
def import_(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml, e.g. task5."),
    archive: Path = typer.Argument(..., help="The ZIP from Moodle's 'Download all submissions'."),
    worksheet: Optional[Path] = typer.Option(None, "--worksheet", help="Moodle's grading worksheet (names, e-mails, drafts, teams)."),
) -> None:
    """Import a Moodle submissions ZIP (all or nothing) into submissions/TASK/.

    Accepts Moodle 4.1+ folders, 3.1-4.0 folders ('..._file_/'), flat downloads, blind marking
    ('Participant_N') and team submissions. A .zip a student uploaded is unpacked into a folder of its name.
    Notebooks are matched to the task's notebooks by their nbgrader cell ids, not by file name.

    Team submissions: the ZIP names each group ('Team Rocket_42', 'Default group'); the worksheet names each
    member's group in its 'Group' column. Import with --worksheet to record the members: export then gives
    every member the team's verdict (it also falls back to the worksheet's 'Group' column by group name).
    """
    from autograder.ingest import import_submissions

    config = _config(ctx)
    report = import_submissions(config, config.task(task), archive, _engine(config), worksheet)
    console.print(
        f"Imported {report.participants} participant(s) from {report.archive}: {len(report.new)} new, "
        f"{len(report.changed)} changed, {len(report.unchanged)} unchanged."
    )
    for participant, problem in sorted(report.problems.items()):
        console.print(Text(f"  {participant}: {problem}", style="yellow"))
    for group, members in sorted(report.teams.items()):
        console.print(f"  team {group}: members {', '.join(members)}")
    if report.drafts:
        console.print(Text(f"  drafts (not graded): {', '.join(report.drafts)}", style="yellow"))


@app.command()
def grade(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Submissions at once (default: grader.toml)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Sandbox backend (default: grader.toml)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Grade only this participant id (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Grade again even where a result exists."),
    fast: Optional[bool] = typer.Option(None, "--fast/--no-fast", help="Fast mode (small subsets, CPU); default from grader.toml."),
) -> None:
    """Run every submission that has no result for its current content (or all with --force)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from autograder.execute import ensure_sandbox_ready
    from autograder.grade import Callbacks, grade_task
    from autograder.placement import Placer

    config = _config(ctx)
    task_config = config.task(task)
    engine = _engine(config)
    placer = Placer(config, backend=backend, fast_mode=fast)
    for sandbox in placer.sandboxes(task_config):
        ensure_sandbox_ready(sandbox)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        bar = progress.add_task(f"grading {task}", total=None)
        callbacks = Callbacks(
            on_plan=lambda to_grade, skipped: progress.update(bar, total=to_grade),
            on_submission_done=lambda item, judgement: (
                progress.advance(bar),
                progress.console.print(f"  {item.participant} {item.name}: {judgement.verdict}"),
            ),
        )
        summary = grade_task(config, task_config, engine, placer, workers=workers or config.sandbox.workers,
                             only=only, force=force, callbacks=callbacks)
    counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(summary.verdicts.items())) or "nothing to do"
    console.print(f"Graded {summary.graded} submission(s) ({counts}); {summary.skipped} already graded.")


@app.command()
def status(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """Show every participant's verdict and failed criteria."""
    from autograder.record import current_results

    config = _config(ctx)
    config.task(task)
    results = current_results(_engine(config), task)
    if as_json:
        rows = [
            {
                "participant": r.participant, "name": r.name, "verdict": r.verdict,
                "automatic_verdict": r.automatic_verdict, "provisional": r.provisional, "status": r.status,
                "override": {"reason": r.override_reason, "author": r.override_author} if r.override_author else None,
                "criteria": [{"id": c.id, "passed": c.passed, "message": c.message} for c in r.criteria],
            }
            for r in results
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{task}: {config.task(task).title}")
    for column in ("Participant", "Name", "Verdict", "Failed criteria"):
        table.add_column(column)
    styles = {"pass": "green", "fail": "red", "error": "magenta", "pending": "dim"}
    for r in results:
        failed = "\n".join(f"{c.id}: {c.message}" for c in r.criteria if not c.passed and c.required)
        verdict = r.verdict + (" (override)" if r.override_author else "") + (" (provisional)" if r.provisional else "")
        table.add_row(r.participant, r.name, Text(verdict, style=styles.get(r.verdict, "")), failed)
    console.print(table)


@app.command()
def export(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    worksheet: Path = typer.Option(..., "--worksheet", help="The grading worksheet downloaded from Moodle."),
    out: Path = typer.Option(..., "--out", help="Where to write the filled worksheet for upload."),
    feedback_zip: Optional[Path] = typer.Option(None, "--feedback-zip", help="Also write a ZIP of German feedback "
                                                "pages for 'Upload multiple feedback files in a zip'."),
    check: bool = typer.Option(False, "--check", help="Check the written worksheet against Moodle's importer rules; "
                               "exit 1 naming every row Moodle would skip."),
) -> None:
    """Fill Moodle's grading worksheet with verdicts (scale text or points) and German HTML feedback.

    Columns are found by header name; names and scale texts come from grader.toml [moodle] and [scale] (set
    them for a German Moodle). Points are written with the worksheet's decimal separator. Team members get
    their team's verdict. Upload the worksheet with 'Allow updating records that have been modified more
    recently in Moodle' ticked, or before the feedback ZIP.
    """
    from autograder.export import check_worksheet, export_worksheet

    config = _config(ctx)
    report = export_worksheet(config, config.task(task), _engine(config), worksheet, out, feedback_zip)
    console.print(f"Wrote {out}: {len(report.written)} graded row(s), {len(report.not_graded)} without a verdict, "
                  f"{len(report.unknown)} unknown.")
    if feedback_zip is not None:
        console.print(f"Wrote {feedback_zip}: {len(report.feedback_files)} feedback page(s).")
    if check:
        findings = check_worksheet(config, out)
        for finding in findings:
            console.print(Text(f"  skipped by Moodle: {finding}", style="yellow"))
        if findings:
            raise typer.Exit(code=int(ExitCode.FINDINGS))
        console.print("Check: Moodle imports every row.")


class OverrideVerdict(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"


@app.command()
def override(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    participant: str = typer.Argument(..., help="Moodle participant id."),
    verdict: OverrideVerdict = typer.Option(..., "--verdict", help="The verdict to set."),
    reason: str = typer.Option(..., "--reason", help="Why (shown to the student in the feedback)."),
    author: str = typer.Option(..., "--author", help="Who decides (a TA's name or login)."),
) -> None:
    """Replace a participant's automatic verdict, with a reason; the history keeps both."""
    from sqlmodel import Session, select

    from autograder.models import Participant, Submission
    from autograder.record import gradebook_entries, record_override, sync_gradebook

    config = _config(ctx)
    config.task(task)
    if not reason.strip():
        raise errors.GraderError("an override needs a reason (--reason)")
    engine = _engine(config)
    with Session(engine) as session:
        submission = session.exec(
            select(Submission).join(Participant, Participant.id == Submission.participant_id)
            .where(Participant.task == task, Participant.moodle_id == participant, Submission.current == True)  # noqa: E712
        ).first()
    if submission is None:
        raise errors.GraderError(f"task {task}: no participant {participant}")
    record_override(engine, submission.id, verdict.value, reason.strip(), author)
    sync_gradebook(config.path(config.paths.nbgrader_course), task, gradebook_entries(engine, task))
    console.print(f"{participant}: verdict set to {verdict.value} ({reason.strip()}).")


@app.command()
def sample(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for the ZIP and worksheet."),
) -> None:
    """Build a Moodle-style submissions ZIP and worksheet from the task's solutions (demo and tests)."""
    from autograder.sample import build_sample

    config = _config(ctx)
    archive, worksheet = build_sample(config, config.task(task), out)
    console.print(f"Wrote {archive} and {worksheet}.")


@app.command()
def release(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
) -> None:
    """Write the student material of a task to release/TASK/ (nbgrader generate_assignment, no solutions)."""
    from autograder.release import release_task

    config = _config(ctx)
    report = release_task(config, config.task(task))
    for name in report.files:
        console.print(f"  {name}")
    console.print(f"Released {task} to {report.folder} ({len(report.files)} files).")


@app.command()
def data(
    ctx: typer.Context,
    force: bool = typer.Option(False, "--force", help="Rebuild every part, even those already there."),
) -> None:
    """Build the offline data notebooks load: NLTK data, a 20 Newsgroups cache, the BERT model path."""
    from autograder.offline import build_offline_data

    config = _config(ctx)
    report = build_offline_data(config.path(config.paths.offline_data), force=force)
    for part, what in report.parts.items():
        console.print(f"  {part}: {what}")
    console.print(f"Offline data ready in {report.folder}.")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
