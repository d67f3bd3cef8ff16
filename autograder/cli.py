"""The `grader` command line: parse options, call one stage function, print the result. Nothing else.

Every failure of the grader (GraderError) is printed as one red line and ends with a documented exit code;
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import enum
import json
import signal
import threading
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
    GRADED_WITH_ERRORS = 10  # grade finished every submission, but some verdicts are `error` (grader faults)
    INTERRUPTED = 130  # Ctrl-C stopped grade: finished submissions recorded, the rest pending (128 + SIGINT)


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
    """Import a Moodle submissions ZIP into submissions/TASK/.

    The archive itself is all or nothing: a corrupt or foreign one is one line, exit 4, nothing imported.
    A participant whose own upload is unusable (a corrupt, encrypted or oversized ZIP, a symbolic link or a
    bad name inside it) is quarantined: imported without files with a German problem text, graded 'error'.

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
    if report.quarantined:
        console.print(Text(f"  quarantined (upload unusable; imported without files, graded 'error'): "
                           f"{', '.join(report.quarantined)}", style="red"))
    for group, members in sorted(report.teams.items()):
        console.print(f"  team {group}: members {', '.join(members)}")
    if report.drafts:
        console.print(Text(f"  drafts (not graded): {', '.join(report.drafts)}", style="yellow"))


@app.command()
def grade(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Submissions at once (default: "
                                          "grader.toml, else min(cores, available memory // the task's memory_mb))."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Sandbox backend (default: grader.toml)."),
    only: Optional[list[str]] = typer.Option(None, "--only", help="Grade only this participant id (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Grade again even where a result exists."),
    fast: Optional[bool] = typer.Option(None, "--fast/--no-fast", help="Fast mode (small subsets, CPU); default from grader.toml."),
    allow_weak_limits: bool = typer.Option(False, "--allow-weak-limits", help="Grade even where cgroups cannot enforce "
                                           "the limits (rlimits only, no CPU share); the runs are marked rlimit-weak."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="Run the notebooks on the workers of this Dask "
                                          "scheduler (tcp://HOST:PORT; the course folder shared at the same path); "
                                          "rubrics and the database stay here, --workers rubrics at once."),
    status_every: float = typer.Option(30.0, "--status-every", min=0.1, help="Seconds between status lines when the "
                                       "output is not a terminal (a log): done/total, verdicts, ETA, what runs now."),
) -> None:
    """Run every submission that has no result for its current content (or all with --force).

    Shows live progress (done/total, verdicts so far, elapsed, ETA, the submissions running now). Ctrl-C stops
    every running sandbox: finished submissions are recorded, the rest stay pending for the next run (exit 130).
    """
    from autograder.execute import ensure_sandbox_ready
    from autograder.grade import grade_task
    from autograder.placement import Placer
    from autograder.progress import progress_view

    config = _config(ctx)
    task_config = config.task(task)
    engine = _engine(config)
    placer = Placer(config, backend=backend, fast_mode=fast, allow_weak_limits=allow_weak_limits)
    for sandbox in placer.sandboxes(task_config):
        ensure_sandbox_ready(sandbox)
    how = ("--workers" if workers else "[sandbox] workers" if config.sandbox.workers
           else "for this machine's cores and memory and the task's memory limit")
    workers = workers or config.sandbox.workers_for(task_config)
    cancel = threading.Event()
    view = progress_view(console, f"grading {task}", status_every, f"{workers} worker(s) ({how})")
    with view, _stop_sandboxes_on_ctrl_c(cancel):
        summary = grade_task(config, task_config, engine, placer, workers=workers, only=only, force=force,
                             callbacks=view.callbacks(), cancel=cancel, cluster=cluster)
    if cancel.is_set():
        err_console.print(Text.assemble(("interrupted: ", "bold red"), f"{summary.graded} graded, "
                                        f"{summary.left_pending} left pending; run grader grade again to continue"))
        raise typer.Exit(code=int(ExitCode.INTERRUPTED))
    counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(summary.verdicts.items())) or "nothing to do"
    console.print(f"Graded {summary.graded} submission(s) ({counts}); {summary.skipped} already graded.")
    console.print(_stages_line(summary), highlight=False)
    if summary.with_errors:
        err_console.print(Text.assemble(
            ("graded, with errors: ", "bold red"),
            f"{len(summary.errors)} submission(s) could not be judged ({', '.join(summary.errors[:10])}"
            f"{', …' if len(summary.errors) > 10 else ''}); see `grader status {task} --json` for the staff detail. "
            "They get no grade in the export and are graded again by the next `grader grade`.",
        ))
        raise typer.Exit(code=int(ExitCode.GRADED_WITH_ERRORS))


def _stages_line(summary) -> str:
    """Where the time went: planning and the gradebook once per run, the rest per graded submission (mean)."""
    stages, graded = summary.stages, max(summary.graded, 1)
    inner = ", ".join(f"{name} {stages[name] / graded:.2f}" for name in ("staging", "sandbox", "capture", "facts")
                      if name in stages)
    line = (f"Stages: plan {stages.get('plan', 0.0):.2f} s, gradebook {stages.get('gradebook', 0.0):.2f} s")
    if summary.graded:
        line += (f"; per graded submission: execute {stages.get('execute', 0.0) / graded:.2f} s"
                 + (f" ({inner})" if inner else "") + f", rubric {stages.get('rubric', 0.0) / graded:.2f} s, "
                 f"record {stages.get('record', 0.0) / graded:.3f} s")
    return line + "."


@contextlib.contextmanager
def _stop_sandboxes_on_ctrl_c(cancel: threading.Event):
    """While grading, Ctrl-C sets `cancel` (no submission starts) and kills every live sandbox at once, so that
    grading ends within seconds with each result recorded or pending; a second Ctrl-C aborts outright."""
    from autograder.sandbox import process

    killers: list[threading.Thread] = []

    def interrupted(signum, frame) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        # Not in the handler itself: it may have interrupted this thread while it held the registry's lock.
        killers.append(threading.Thread(target=process.terminate_all, name="stop-sandboxes", daemon=True))
        killers[-1].start()

    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        yield
        return
    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        for killer in killers:
            killer.join(timeout=process.TERMINATE_SECONDS)
        process.accept_runs()


@app.command()
def status(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (one row per participant) instead of a table."),
    verdict: Optional[str] = typer.Option(None, "--verdict", help="Only this verdict: pass, fail, error or pending."),
    criterion: Optional[str] = typer.Option(None, "--criterion", help="Only those where this criterion (id, e.g. "
                                            "main.finished) did not pass."),
    provisional: Optional[bool] = typer.Option(None, "--provisional/--final", help="Only provisional (fast mode) "
                                               "or only final verdicts."),
) -> None:
    """Show every participant's verdict, failed criteria and overrides (staff detail with --json), and the
    pass/fail/error count of every criterion."""
    from autograder.record import current_results
    from autograder.review.query import criterion_counts, select_results, status_csv

    config = _config(ctx)
    config.task(task)
    every = current_results(_engine(config), task)
    _check_filters(every, verdict, criterion)
    results = select_results(every, verdict=verdict, criterion=criterion, provisional=provisional)
    if as_json:
        print(json.dumps([_status_row(r) for r in results], ensure_ascii=False, indent=2))
        return
    if as_csv:
        print(status_csv(results), end="")
        return
    table = Table(title=f"{task}: {config.task(task).title}")
    for column in ("Participant", "Name", "Verdict", "Failed criteria", "Advice (not deciding)"):
        table.add_column(column)
    styles = {"pass": "green", "fail": "red", "error": "magenta", "pending": "dim"}
    for r in results:
        shown = [c for c in r.criteria if not c.passed and c.required]
        failed = "\n".join(f"{c.id} ({c.state.value}): {c.message}" for c in shown) or r.problem
        advice = "\n".join(f"{c.id} ({c.state.value}): {c.message}" for c in r.criteria
                           if not c.passed and not c.required)
        table.add_row(r.participant, r.name, Text(_verdict_label(r), style=styles.get(r.verdict, "")), failed,
                      Text(advice, style="yellow"))
    table.caption = _limits_caption(results) or None
    console.print(table)
    counts = Table(title="Criteria (all participants)")
    for column in ("Criterion", "pass", "fail", "error"):
        counts.add_column(column)
    for count in criterion_counts(every):
        counts.add_row(count.criterion, str(count.passed), str(count.failed), str(count.errors))
    console.print(counts)


def _check_filters(results, verdict: str | None, criterion: str | None) -> None:
    """A mistyped filter is one line, not an empty table."""
    if verdict is not None and verdict not in ("pass", "fail", "error", "pending"):
        raise errors.GraderError(f"--verdict {verdict}: expected pass, fail, error or pending")
    known = sorted({c.id for r in results for c in r.criteria})
    if criterion is not None and known and criterion not in known:
        raise errors.GraderError(f"--criterion {criterion}: no such criterion (known: {', '.join(known)})")


def _verdict_label(r) -> str:
    label = r.verdict
    if r.overridden:
        label += f" (override; automatic {r.automatic_verdict})" if r.override_disputed else " (override)"
        label += " (override from an earlier upload: confirm or clear)" if r.override_stale else ""
    return label + (" (provisional)" if r.provisional else "")


def _status_row(r) -> dict:
    override = None
    if r.overridden:
        override = {"reason": r.override_reason, "author": r.override_author, "stale": r.override_stale,
                    "disputed": r.override_disputed}
    return {
        "participant": r.participant, "name": r.name, "verdict": r.verdict,
        "automatic_verdict": r.automatic_verdict, "provisional": r.provisional, "status": r.status,
        "problem": r.problem, "override": override, "limits": list(r.limits),
        "criteria": [c.model_dump(mode="json") for c in r.criteria],
    }


def _limits_caption(results) -> str:
    """One line per way the limits were enforced in the task's current runs (weak ones stand out)."""
    modes: dict[str, int] = {}
    for r in results:
        for limits in r.limits:
            mode = (f"{limits.get('limits', '?')}: memory {limits.get('memory_mb', '?')} MB, "
                    f"pids {limits.get('pids', '?')}, cpus {limits.get('cpus', '?')}")
            modes[mode] = modes.get(mode, 0) + 1
    return "\n".join(f"limits in force ({n} execution(s)) {mode}" for mode, n in sorted(modes.items()))


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
    include_provisional: bool = typer.Option(False, "--include-provisional", help="Also export provisional verdicts "
                                             "(graded in fast mode on a CPU); left out by default."),
) -> None:
    """Fill Moodle's grading worksheet with verdicts (scale text or points) and German HTML feedback.

    Columns are found by header name; names and scale texts come from grader.toml [moodle] and [scale] (set
    them for a German Moodle). Points are written with the worksheet's decimal separator. Team members get
    their team's verdict. Upload the worksheet with 'Allow updating records that have been modified more
    recently in Moodle' ticked, or before the feedback ZIP.
    """
    from autograder.export import check_worksheet, export_worksheet

    config = _config(ctx)
    report = export_worksheet(config, config.task(task), _engine(config), worksheet, out, feedback_zip,
                              include_provisional=include_provisional)
    console.print(f"Wrote {out}: {len(report.written)} graded row(s), {len(report.not_graded)} without a verdict, "
                  f"{len(report.unknown)} unknown.")
    if report.provisional:
        console.print(Text(f"  left out {len(report.provisional)} provisional verdict(s) (fast mode): "
                           f"{', '.join(report.provisional)}; grade them on a GPU or pass --include-provisional",
                           style="yellow"))
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
    verdict: Optional[OverrideVerdict] = typer.Option(None, "--verdict", help="The verdict to set (or to confirm for "
                                                      "the newest upload)."),
    clear: bool = typer.Option(False, "--clear", help="Remove the override: the automatic verdict applies again."),
    reason: str = typer.Option(..., "--reason", help="Why (shown to the student in the feedback)."),
    author: str = typer.Option(..., "--author", help="Who decides (a TA's name or login)."),
) -> None:
    """Set, confirm or clear a TA's verdict for a participant, with a reason; the history keeps every decision.

    An override keeps applying when the participant uploads again; `grader status` then marks it as made on an
    earlier upload until it is confirmed (set again) or cleared.
    """
    from autograder.record import gradebook_entries, record_override, sync_gradebook

    config = _config(ctx)
    config.task(task)
    if (verdict is None) == (not clear):
        raise errors.GraderError("give either --verdict pass|fail or --clear")
    if not reason.strip():
        raise errors.GraderError("an override needs a reason (--reason)")
    engine = _engine(config)
    decision = "cleared" if clear else verdict.value
    record_override(engine, task, participant, decision, reason.strip(), author)
    sync_gradebook(config.path(config.paths.nbgrader_course), task, gradebook_entries(engine, task))
    what = "override cleared" if clear else f"verdict set to {decision}"
    console.print(f"{participant}: {what} ({reason.strip()}).")


@app.command()
def verify(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Submissions at once (default: grader.toml)."),
) -> None:
    """Grade the task's solutions/ and report every verdict or failed criterion that differs from expected.toml.

    Run it after changing a rubric or a threshold. It works in runs/verify/TASK/ (its own database), never on
    the course's submissions; executions are cached there, so a second verify only runs the rubric again.
    """
    from autograder.verify import verify_task

    config = _config(ctx)
    report = verify_task(config, config.task(task), workers=workers or config.sandbox.workers_for(config.task(task)))
    for difference in report.differences:
        console.print(Text(f"  {difference}", style="red"))
    console.print(f"Verified {report.solutions} solution(s) of {task}: {len(report.differences)} difference(s).")
    if report.differences:
        raise typer.Exit(code=int(ExitCode.FINDINGS))


@app.command()
def sample(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for the ZIP and worksheet."),
    pick: int = typer.Option(None, "--pick", min=1,
                             help="Only this many solutions: the reference and others spread over the rest."),
) -> None:
    """Build a Moodle-style submissions ZIP and worksheet from the task's solutions (demo and tests)."""
    from autograder.sample import build_sample

    config = _config(ctx)
    archive, worksheet = build_sample(config, config.task(task), out, pick)
    console.print(f"Wrote {archive} and {worksheet}.")


@app.command()
def release(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
) -> None:
    """Write the student material of a task to release/TASK/ (nbgrader generate_assignment, no solutions)."""
    from autograder.release import release_task

    from autograder.selfcheck import publish_selfcheck

    config = _config(ctx)
    report = release_task(config, config.task(task))
    official_only = publish_selfcheck(config, config.task(task), report.folder, report.support)
    for name in report.files:
        console.print(f"  {name}")
    console.print(f"Released {task} to {report.folder} ({len(report.files)} files).")
    console.print(f"Self-check and README.md in {report.support}; {len(official_only)} criteria only the official "
                  "grading decides" + (f": {', '.join(official_only)}." if official_only else "."))


@app.command()
def check(
    task: str = typer.Argument(..., help="Task id, e.g. task4."),
    paths: list[Path] = typer.Argument(..., help="The file(s) you will upload to Moodle (notebooks, repository ZIP)."),
    release_dir: Optional[Path] = typer.Option(None, "--release", help="The released task folder (default: found "
                                               "from the current folder)."),
    local: bool = typer.Option(False, "--local", help="Run in a plain local kernel even if a sandbox is available."),
    offline_data: Optional[Path] = typer.Option(None, "--offline-data", help="The course's offline data folder."),
) -> None:
    """For students: check notebooks before uploading them, with the task's public criteria (German feedback)."""
    from autograder.selfcheck import check_upload, find_release

    release = find_release(task, Path.cwd(), release_dir)
    report = check_upload(release, task, paths, local=local, offline_data=offline_data)
    _print_check(report)
    if report.verdict != "pass" or report.problem:
        raise typer.Exit(code=int(ExitCode.FINDINGS))


def _print_check(report) -> None:
    console.print(f"Selbstprüfung: {report.task.title}", style="bold")
    if not report.sandboxed:
        console.print("Hinweis: Keine Sandbox verfügbar, das Notebook lief in einem normalen lokalen Kernel. Die "
                      "Grenzen für Speicher, Prozesse und Rechenzeit der offiziellen Bewertung werden dabei nicht "
                      "durchgesetzt; nur die Zeitgrenzen gelten.", style="yellow")
    console.print("So sieht Moodle Ihre Abgabe: " + ", ".join(f"{name} ({kb} KB)" for name, kb in report.upload.files))
    for warning in report.upload.warnings:
        console.print(f"  WARNUNG: {warning}", style="yellow")
    if report.problem:
        console.print(f"Die Abgabe kann so nicht bewertet werden: {report.problem}", style="red")
        return
    console.print("Öffentliche Kriterien:")
    for c in report.criteria:
        mark = {"pass": "bestanden", "fail": "NICHT bestanden", "error": "FEHLER der Prüfung"}[c.state.value]
        kind = "" if c.required else " (Hinweis, zählt nicht)"
        console.print(f"  [{mark}] {c.id}: {c.title}{kind}", style="green" if c.state.value == "pass" else "red",
                      markup=False)
        if c.message:
            console.print(f"      {c.message}", markup=False)
    checked = [e for e in report.official_only if e["criterion"].split(".")[0] in {c.notebook_id for c in report.criteria}]
    if checked:
        console.print("Nur die offizielle Bewertung entscheidet (braucht Daten, die Sie nicht haben):")
        for entry in checked:
            console.print(f"  - {entry['criterion']}: {entry['title']}", markup=False)
    if report.unchecked:
        console.print("Nicht geprüft (nicht angegeben): " + ", ".join(report.unchecked), markup=False)
    summary = {"pass": "Alle öffentlichen Pflichtkriterien sind erfüllt.",
               "fail": "Mindestens ein öffentliches Pflichtkriterium ist nicht erfüllt.",
               "error": "Die Prüfung selbst ist auf einen Fehler gestoßen; das liegt nicht an Ihnen."}
    console.print(summary.get(report.verdict, report.verdict), style="bold")


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


@app.command()
def doctor(
    ctx: typer.Context,
    cgroup_root: Optional[Path] = typer.Option(None, "--cgroup-root", hidden=True, help="Check this cgroup root (tests)."),
) -> None:
    """Check this host's requirements (cgroups, root, bwrap, seccomp, …): each met or not, with the fix.

    Exits 1 when a required one is missing; optional ones (podman, /dev/kvm, TeX) only inform. A grader.toml
    that names a sandbox launcher (the grader as an ordinary user) has the launcher checked instead of root.
    """
    from autograder.doctor import run_checks

    launcher = _config(ctx).sandbox.launcher if Path(ctx.obj).is_file() else None
    checks = run_checks(cgroup_root, launcher)
    for check in checks:
        if check.met:
            console.print(Text.assemble(("ok       ", "green"), f"{check.name}: {check.detail}"))
        else:
            label, style = ("missing  ", "bold red") if check.required else ("optional ", "yellow")
            console.print(Text.assemble((label, style), f"{check.name}: {check.detail}"))
    missing = [c.name for c in checks if c.required and not c.met]
    if missing:
        console.print(Text(f"Not ready to grade: {', '.join(missing)} missing.", style="bold red"))
        raise typer.Exit(code=int(ExitCode.FINDINGS))
    console.print("Ready to grade.")



@app.command()
def show(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    participant: str = typer.Argument(..., help="Moodle participant id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Everything about one submission: criteria with staff detail, exit reason and limits, runtime and backend,
    the executed notebook and figures (paths), and the history of runs and overrides."""
    from autograder.review.query import submission_view

    config = _config(ctx)
    config.task(task)
    view = submission_view(_engine(config), config.path(config.paths.runs), task, participant)
    if as_json:
        print(json.dumps(_show_json(view), ensure_ascii=False, indent=2, default=str))
        return
    r = view.result
    console.print(Text.assemble((f"{task} {r.participant} {r.name}: ", "bold"), _verdict_label(r)))
    if r.overridden:
        console.print(f"  override by {r.override_author}: {r.override_reason} (automatic {r.automatic_verdict})")
    if r.problem:
        console.print(Text(f"  problem: {r.problem}", style="yellow"))
    if view.run_id is None:
        console.print("  not graded yet")
    else:
        console.print(f"  run: {view.runtime_seconds:.1f} s ({view.rubric_seconds:.1f} s rubric) on "
                      f"{view.backend}/{view.runtime}, finished {view.finished_at:%Y-%m-%d %H:%M:%S}, "
                      f"{'provisional' if r.provisional else 'final'}")
    for c in r.criteria:
        console.print(Text.assemble(f"  [{c.state.value}] ", (c.id, "bold"), f" {c.title}" + ("" if c.required else " (advice)")))
        if c.message:
            console.print(f"      message: {c.message}")
        for line in c.detail.splitlines():
            console.print(Text(f"      | {line}", style="dim"))
    for x in view.executions:
        limits = x.limits
        console.print(Text(f"  notebook {x.notebook_id} (execution {x.id})", style="bold"))
        console.print(f"      exit: {x.exit_reason} (runner {x.runner_status}){': ' + x.message if x.message else ''}; "
                      f"{x.wall_seconds:.1f} s, peak {x.memory_peak_mb if x.memory_peak_mb is not None else '?'} MB")
        console.print(f"      limits: {limits.get('limits', '?')}: memory {limits.get('memory_mb', '?')} MB, "
                      f"pids {limits.get('pids', '?')}, cpus {limits.get('cpus', '?')}"
                      + (f"; limit hit: {x.limit_hit}" if x.limit_hit else ""))
        console.print(f"      executed notebook: {x.notebook_path or '(none)'}")
        console.print(f"      figures: {x.figures_path or '(none)'} ({len(x.figures)} figure(s))")
    console.print(Text("  history", style="bold"))
    for h in view.history:
        console.print(f"    {h.at:%Y-%m-%d %H:%M:%S}  {h.text}")


def _show_json(view) -> dict:
    return {
        **_status_row(view.result), "runtime_seconds": view.runtime_seconds, "backend": view.backend,
        "runtime": view.runtime, "finished_at": view.finished_at,
        "executions": [{"id": x.id, "notebook_id": x.notebook_id, "exit_reason": x.exit_reason,
                        "runner_status": x.runner_status, "message": x.message, "wall_seconds": x.wall_seconds,
                        "memory_peak_mb": x.memory_peak_mb, "limits": x.limits, "limit_hit": x.limit_hit,
                        "executed_notebook": x.notebook_path, "figures": x.figures_path} for x in view.executions],
        "history": [{"at": h.at, "kind": h.kind, "verdict": h.verdict, "text": h.text} for h in view.history],
    }


@app.command()
def review(
    ctx: typer.Context,
    task: Optional[str] = typer.Argument(None, help="Task to open first (default: the first in grader.toml)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; any other than the loopback "
                             "needs --token."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on."),
    token: Optional[str] = typer.Option(None, "--token", help="Access token every request must carry (open "
                                        "http://HOST:PORT/?token=T once; a cookie keeps it)."),
) -> None:
    """A local web page for TAs: the failures of a task, the evidence of each, overrides and regrading."""
    import ipaddress

    import uvicorn

    from autograder.review.app import create_app
    from autograder.review.regrade import regrader

    config = _config(ctx)
    if task is not None:
        config.task(task)
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not token:
        raise errors.GraderError(f"--host {host} is reachable from other machines: give an access --token")
    engine = _engine(config)
    web = create_app(config, engine, default_task=task, token=token, regrade=regrader(config, engine))
    console.print(f"Review at http://{host}:{port}/" + (f"?token={token}" if token else "") + " (Ctrl+C stops).")
    uvicorn.run(web, host=host, port=port, log_level="warning")


@app.command()
def similarity(
    ctx: typer.Context,
    task: str = typer.Argument(..., help="Task id from grader.toml."),
    threshold: float = typer.Option(0.5, "--threshold", min=0.01, max=1.0, help="Report pairs whose score "
                                    "(Jaccard of the code fingerprints, 0-1) is at least this."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML page with the passages side "
                                            "by side."),
    max_sharers: int = typer.Option(10, "--max-sharers", min=2, help="Code found in more submissions than this is "
                                    "course-wide idiom and matches no pair (as MOSS's -m)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of text."),
) -> None:
    """Which current submissions of a task share their code, for TAs to look at; verdicts are never changed.

    Compares the code cells students wrote (released cells and code are ignored), normalised so that renamed
    variables, comments and reformatting do not hide a copy; for a repository task its LaTeX, Markdown and
    code files (the template is ignored). Members of the same team are never a pair.
    """
    from autograder.similarity import find_similar, report_html, report_json

    config = _config(ctx)
    report = find_similar(config, config.task(task), _engine(config), threshold, max_sharers)
    if html_out is not None:
        try:
            html_out.write_text(report_html(report), encoding="utf-8")
        except OSError as exc:
            raise errors.GraderError(f"{html_out}: cannot write the HTML report: {exc.strerror}") from exc
    if as_json:
        print(json.dumps(report_json(report), ensure_ascii=False, indent=2))
        return
    console.print(Text(report.note, style="bold"))
    console.print(f"{report.submissions} submission(s) of {report.task} compared, threshold {report.threshold}: "
                  f"{len(report.pairs)} pair(s); {report.team_pairs_skipped} pair(s) sharing a team member skipped.")
    for pair in report.pairs:
        console.print(Text(f"\n{pair.a} ({pair.name_a}) – {pair.b} ({pair.name_b}): score {pair.score}, "
                           f"{pair.shared} shared fingerprints", style="bold yellow"))
        table = Table(show_lines=True, expand=True)
        table.add_column(pair.a, overflow="fold")
        table.add_column(pair.b, overflow="fold")
        for passage in pair.passages:
            table.add_row(Text(f"{passage.unit_a}, lines {passage.lines_a[0]}-{passage.lines_a[1]}\n{passage.text_a}"),
                          Text(f"{passage.unit_b}, lines {passage.lines_b[0]}-{passage.lines_b[1]}\n{passage.text_b}"))
        console.print(table)
    if html_out is not None:
        console.print(f"HTML report: {html_out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
