"""A fault of the grader is never a student's fail: rubric bugs, timeouts, crashes and mistyped settings give
`error` (shown to staff, never exported), the run goes on, and overrides and provisional verdicts stay honest."""

from __future__ import annotations

import csv
import io
import json

import pytest

from conftest import TEST_ASSIGNMENTS, make_workspace, moodle_zip, notebook

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

FAULTS_CONFIG = """
[course]
name = "Fault checks"
short_name = "FLT"

[sandbox]
workers = 2

[runtimes.cpu]
kind = "cpu"

[runtimes.gpu]
kind = "gpu"

[tasks.faults]
title = "Fehlerprüfung"
cell_timeout = 20
notebook_timeout = 60
memory_mb = 768
rubric_timeout = 20
{extra}

[[tasks.faults.notebooks]]
id = "main"
file = "answer.ipynb"
title = "Antwort"
{notebook_extra}

[tasks.faults.rubric]
{rubric}
"""

HEADER = ('Identifier,"Full name","Email address",Status,Grade,Scale,"Grade can be changed",'
          '"Last modified (submission)","Last modified (grade)","Feedback comments"')
SCALE = '"nicht erfolgreich bearbeitet   erfolgreich bearbeitet"'


def _workspace(tmp_path, extra="", notebook_extra="", rubric=""):
    text = FAULTS_CONFIG.format(extra=extra, notebook_extra=notebook_extra, rubric=rubric)
    return make_workspace(tmp_path / "course", text, TEST_ASSIGNMENTS)


def _says(word: str) -> str:
    return notebook(f"print({word!r})")


def _worksheet(path, participants):
    rows = [f'"Participant {p}","Person {p}",{p}@example.edu,"Submitted for grading",,{SCALE},Yes,'
            f'"Monday, 10 November 2026, 9:15 AM",-,' for p in participants]
    path.write_bytes(("\ufeff" + "\n".join([HEADER, *rows]) + "\n").encode("utf-8"))
    return path


def _grades(path) -> dict[str, str]:
    rows = csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig")))
    return {row["Identifier"].split()[-1]: row["Grade"] for row in rows}


@pytest.mark.slow(cost=60)
def test_rubric_faults_are_errors_and_the_run_completes(tmp_path):
    """A rubric that raises, hangs or crashes gives `error` for that submission only; all others are graded."""
    course = _workspace(tmp_path)
    words = {"3000001": "ok", "3000002": "wrong", "3000003": "raise", "3000004": "hang", "3000005": "crash",
             "3000006": "ok"}
    archive = moodle_zip(tmp_path / "m.zip", {p: {"answer.ipynb": _says(w)} for p, w in words.items()})
    assert course.cli("import", "faults", archive).exit_code == 0

    result = course.cli("grade", "faults")
    assert result.exit_code == 10, result.output  # ExitCode.GRADED_WITH_ERRORS
    assert "graded, with errors: 3 submission(s)" in result.output
    status = course.status("faults")
    verdicts = {p: status[p]["verdict"] for p in words}
    assert verdicts == {"3000001": "pass", "3000002": "fail", "3000003": "error", "3000004": "error",
                        "3000005": "error", "3000006": "pass"}

    raised = {c["id"]: c for c in status["3000003"]["criteria"]}
    assert raised["main.answer"]["state"] == "error"
    assert "ValueError: a bug in the rubric" in raised["main.answer"]["detail"]  # the staff detail is kept
    assert raised["main.printed"]["state"] == "pass"  # the other criteria of the rubric still judged
    hung = {c["id"]: c for c in status["3000004"]["criteria"]}
    assert hung["grader.rubric"]["state"] == "error"
    assert "rubric ran longer than 20 s" in hung["grader.rubric"]["detail"]
    crashed = {c["id"]: c for c in status["3000005"]["criteria"]}
    assert "rubric could not run (pytest exit 70)" in crashed["grader.rubric"]["detail"]
    wrong = {c["id"]: c for c in status["3000002"]["criteria"]}
    assert wrong["main.answer"] == {**wrong["main.answer"], "state": "fail", "message": "Die Antwort ist falsch."}

    worksheet = _worksheet(tmp_path / "Grades.csv", words)
    out = tmp_path / "Upload.csv"
    assert course.cli("export", "faults", "--worksheet", worksheet, "--out", out).exit_code == 0
    grades = _grades(out)
    assert grades["3000001"] == "erfolgreich bearbeitet" and grades["3000002"] == "nicht erfolgreich bearbeitet"
    assert grades["3000003"] == grades["3000004"] == grades["3000005"] == ""  # an error is never a grade

    # The next run tries the errors again (the fault may be fixed) and leaves the verdicts alone.
    again = course.cli("grade", "faults", "--only", "3000003", "--only", "3000001")
    assert again.exit_code == 10 and "Graded 1 submission(s) (1 error); 1 already graded." in again.output


def test_mistyped_or_unknown_rubric_setting_is_one_line_before_anything_runs(tmp_path):
    course = _workspace(tmp_path, rubric="min_anwser = 40")
    result = course.cli("grade", "faults")
    assert result.exit_code == 3  # ExitCode.CONFIG
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "tasks.faults.rubric.min_anwser: unknown rubric setting (declared: min_answer)" in lines[0]

    course = _workspace(tmp_path / "typed", rubric='min_answer = "viel"')
    result = course.cli("status", "faults")
    assert result.exit_code == 3 and "tasks.faults.rubric.min_answer: expected int, got 'viel'" in result.output


def test_a_setting_changes_the_verdict_through_the_declared_default_and_grader_toml(tmp_path):
    course = _workspace(tmp_path, rubric="min_answer = 43")
    archive = moodle_zip(tmp_path / "m.zip", {"3100001": {"answer.ipynb": _says("ok")}})
    assert course.cli("import", "faults", archive).exit_code == 0
    assert course.cli("grade", "faults").exit_code == 0
    assert course.status("faults")["3100001"]["verdict"] == "fail"  # 42 < 43: the value from grader.toml counts


def test_override_survives_resubmission_until_confirmed_or_cleared(tmp_path):
    course = _workspace(tmp_path)
    first = moodle_zip(tmp_path / "first.zip", {"3200001": {"answer.ipynb": _says("wrong")}})
    assert course.cli("import", "faults", first).exit_code == 0
    assert course.cli("grade", "faults").exit_code == 0
    assert course.cli("override", "faults", "3200001", "--verdict", "pass", "--reason", "Antwort mündlich erklärt",
                      "--author", "tutor").exit_code == 0
    row = course.status("faults")["3200001"]
    assert row["verdict"] == "pass" and row["override"]["stale"] is False and row["override"]["disputed"] is True

    second = moodle_zip(tmp_path / "second.zip", {"3200001": {"answer.ipynb": _says("wrong") + "\n"}})
    assert course.cli("import", "faults", second).exit_code == 0
    assert course.cli("grade", "faults").exit_code == 0
    row = course.status("faults")["3200001"]
    assert row["verdict"] == "pass" and row["automatic_verdict"] == "fail"
    assert row["override"]["stale"] is True and row["override"]["disputed"] is True
    table = " ".join(course.cli("status", "faults").output.split())  # the table wraps its cells
    assert "earlier" in table and "automatic" in table

    assert course.cli("override", "faults", "3200001", "--verdict", "pass", "--reason", "weiterhin erklärt",
                      "--author", "tutor").exit_code == 0
    assert course.status("faults")["3200001"]["override"]["stale"] is False
    assert course.cli("override", "faults", "3200001", "--clear", "--reason", "doch nicht",
                      "--author", "tutor").exit_code == 0
    row = course.status("faults")["3200001"]
    assert row["verdict"] == "fail" and row["override"] is None
    neither = course.cli("override", "faults", "3200001", "--reason", "x", "--author", "tutor")
    assert neither.exit_code == 9 and "give either --verdict pass|fail or --clear" in neither.output


@pytest.mark.slow(cost=40)
def test_provisional_verdicts_are_left_out_of_the_export_unless_asked(tmp_path):
    """A gpu notebook graded in fast mode on the CPU is provisional: not a Moodle grade by default."""
    course = _workspace(tmp_path, extra="allow_fast_cpu = true", notebook_extra='runtime = "gpu"')
    archive = moodle_zip(tmp_path / "m.zip", {"3300001": {"answer.ipynb": _says("ok")}})
    assert course.cli("import", "faults", archive).exit_code == 0
    assert course.cli("grade", "faults").exit_code == 0
    assert course.status("faults")["3300001"]["provisional"] is True
    worksheet = _worksheet(tmp_path / "Grades.csv", ["3300001"])
    out = tmp_path / "Upload.csv"
    result = course.cli("export", "faults", "--worksheet", worksheet, "--out", out)
    assert result.exit_code == 0 and "left out 1 provisional verdict(s)" in result.output
    assert _grades(out)["3300001"] == ""
    result = course.cli("export", "faults", "--worksheet", worksheet, "--out", out, "--include-provisional")
    assert result.exit_code == 0 and _grades(out)["3300001"] == "erfolgreich bearbeitet"


def test_status_json_carries_the_one_criterion_shape(tmp_path):
    course = _workspace(tmp_path)
    archive = moodle_zip(tmp_path / "m.zip", {"3400001": {"answer.ipynb": _says("wrong")}})
    assert course.cli("import", "faults", archive).exit_code == 0
    assert course.cli("grade", "faults").exit_code == 0
    row = course.status("faults")["3400001"]
    [limits] = row["limits"]  # the limits in force for the run's one execution, as the sandbox enforced them
    assert limits["notebook_id"] == "main" and limits["limits"] in ("cgroup1", "cgroup2")
    assert limits["memory_mb"] == 768 and limits["pids"] == 256 and limits["cpus"] > 0
    assert f"limits in force (1 execution(s)) {limits['limits']}: memory 768 MB" in course.cli("status", "faults").output
    criterion = next(c for c in row["criteria"] if c["id"] == "main.answer")
    assert set(criterion) == {"id", "notebook_id", "title", "required", "state", "message", "detail", "passed"}
    assert "AssertionError: Die Antwort ist falsch." in criterion["detail"]
    assert json.dumps(criterion, ensure_ascii=False)


# --- Rubric workers: one process serves the submissions of a run, and a fault still touches only one -------

STATE_RUBRIC = '''"""Remembers what it saw (module, helper module, environment); tells its process id; can crash."""
import os

import pytest

import remembered

pytestmark = pytest.mark.notebook("main")
SEEN = []


def _word(nb):
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])).split()[0]


@pytest.mark.criterion("fresh")
def test_fresh(nb):
    """Die Rubrik beginnt frisch"""
    SEEN.append(nb.folder)
    remembered.SEEN.append(nb.folder)
    earlier, os.environ["RUBRIC_SAW"] = os.environ.get("RUBRIC_SAW", ""), str(nb.folder)
    assert len(SEEN) == len(remembered.SEEN) == 1 and not earlier, f"{len(SEEN)} {len(remembered.SEEN)} {earlier}"


@pytest.mark.criterion("process")
def test_process(nb):
    """Prozess"""
    if _word(nb) == "crash":
        os._exit(70)
    assert False, f"pid {os.getpid()}"
'''


def _executed(folder, word: str):
    """A submission as the rubric sees it: an upload and its execution folder (the files only, no sandbox)."""
    import nbformat

    from autograder.check import SubmittedNotebook
    from autograder.execute import ExecutionOutcome
    from autograder.sandbox import ExitReason

    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"print({word!r})", execution_count=1,
                                          outputs=[nbformat.v4.new_output("stream", name="stdout", text=word + "\n")])]
    (folder / "answer.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    (folder / "executed.ipynb").write_text(json.dumps(nb), encoding="utf-8")  # outputs' text as one string
    (folder / "execution.json").write_text("{}", encoding="utf-8")
    outcome = ExecutionOutcome(key=word, reason=ExitReason.OK, runner_status="completed", message="",
                               wall_seconds=0.1, memory_peak_mb=None, folder=folder)
    return [SubmittedNotebook("main", folder / "answer.ipynb", outcome)]


def _state_task(tmp_path):
    """A task whose rubric (STATE_RUBRIC) keeps state at module level and in a helper module."""
    rubric = tmp_path / "assignments" / "state" / "rubric"
    rubric.mkdir(parents=True)
    (rubric / "test_state.py").write_text(STATE_RUBRIC, encoding="utf-8")
    (rubric / "remembered.py").write_text("SEEN = []\n", encoding="utf-8")
    text = FAULTS_CONFIG.format(extra="", notebook_extra="", rubric="").replace("tasks.faults", "tasks.state")
    config = make_workspace(tmp_path / "course", text, tmp_path / "assignments").config()
    return config, config.task("state")


def _judged(config, task, workers, tmp_path, words):
    from autograder.check import judge

    return [judge(config, task, _executed(tmp_path / f"{i}-{word}", word), rubric=workers)
            for i, word in enumerate(words)]


def _criteria(judgement) -> dict:
    return {c.id: c for c in judgement.criteria}


def test_a_hung_rubric_is_killed_at_its_timeout_and_only_its_submission_errs(tmp_path):
    """The worker that hangs is killed once rubric_timeout has passed; the next submission gets a fresh one."""
    import time

    from autograder.check import judge, rubric_workers

    config = _workspace(tmp_path).config()
    task = config.task("faults").model_copy(update={"rubric_timeout": 3})
    with rubric_workers(config, task, warm=1) as workers:
        [before] = _judged(config, task, workers, tmp_path / "a", ["ok"])  # the worker is up: only the rubric counts
        started = time.monotonic()
        hung = judge(config, task, _executed(tmp_path / "hang", "hang"), rubric=workers)
        waited = time.monotonic() - started
        after = _judged(config, task, workers, tmp_path / "b", ["ok", "wrong"])
    assert 3 <= waited < 3 + 10, waited
    assert hung.verdict == "error"
    assert "rubric ran longer than 3 s" in _criteria(hung)["grader.rubric"].detail
    assert [j.verdict for j in (before, *after)] == ["pass", "pass", "fail"]
    assert _criteria(after[1])["main.answer"].message == "Die Antwort ist falsch."


def test_rubric_module_state_does_not_reach_the_next_submission(tmp_path):
    """One worker serves every submission (one process id), and each sees its rubric's modules fresh."""
    from autograder.check import rubric_workers

    config, task = _state_task(tmp_path)
    with rubric_workers(config, task) as workers:
        judged = _judged(config, task, workers, tmp_path, ["ok", "ok", "ok"])
    assert [_criteria(j)["main.fresh"].state.value for j in judged] == ["pass"] * 3
    assert len({_criteria(j)["main.process"].message for j in judged}) == 1  # the same worker process


def test_the_rubric_worker_is_replaced_after_a_fault(tmp_path):
    """A worker that died gives `error` for its submission only; the next runs in a new process, fresh."""
    from autograder.check import rubric_workers

    config, task = _state_task(tmp_path)
    with rubric_workers(config, task) as workers:
        first, crashed, second, third = _judged(config, task, workers, tmp_path, ["ok", "crash", "ok", "ok"])
    assert crashed.verdict == "error" and set(_criteria(crashed)) == {"main.submitted", "main.executed",
                                                                       "grader.rubric"}
    assert "rubric could not run (pytest exit 70)" in _criteria(crashed)["grader.rubric"].detail
    assert all(_criteria(j)["main.fresh"].state.value == "pass" for j in (first, second, third))
    pids = [_criteria(j)["main.process"].message for j in (first, second, third)]
    assert pids[0] != pids[1] == pids[2]
