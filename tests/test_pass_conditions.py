"""What decides a verdict is exactly what the released task text names as its pass condition.

Each released notebook states when the task counts as done ("Bearbeitet ist die Aufgabe, wenn …", in task 5's
part 3 "So wird geprüft: …"). grader.toml marks every criterion `required` (with the words of that text it
implements) or `advice`. These tests read the text as students get it (the locked cells of the instructor
notebook, which `grader release` copies unchanged, and the text files of a task's template) and check both ways: every phrase a required criterion claims
is in the text, every word of the text that carries meaning is claimed by some required criterion, and every
criterion the grader or the rubric reports is marked, required ones with a phrase.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from autograder.config import TaskConfig, load_config
from conftest import REPO

CONFIG = load_config(REPO / "grader.toml")
MARKERS = ("Bearbeitet ist die Aufgabe, wenn", "So wird geprüft:")
# Words that carry no condition of their own: they join the parts of the pass condition.
FUNCTION_WORDS = {
    "aber", "auch", "dabei", "danach", "dann", "dass", "deshalb", "diese", "eine", "einem", "einen", "einer",
    "oder", "sind", "sowie", "wenn", "wird", "ihre", "ihrem", "ihren", "ihrer",
}

# Lists every rubric test's (notebook, criterion, required marker) without running it.
_COLLECT = """
import json, sys
import pytest
from autograder.rubric import _notebook_of, criterion_of

class Collector:
    def pytest_collection_finish(self, session):
        found = [[_notebook_of(item), *criterion_of(item)] for item in session.items]
        print("CRITERIA " + json.dumps(found))

folder = sys.argv[1]
code = pytest.main([folder, "--collect-only", "-q", "-p", "autograder.rubric", "-p", "no:cacheprovider",
                    "-p", "no:randomly", f"--rootdir={folder}", "-c", "/dev/null"], plugins=[Collector()])
sys.exit(0 if code == 0 else 1)
"""


def _normal(text: str) -> str:
    """Text as read, without Markdown emphasis, code marks and typographic quotes, whitespace collapsed."""
    text = re.sub(r"[*`„“”\"]", "", text)
    return re.sub(r"\s+", " ", text).strip()


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[^\W\d_]{4,}", text.lower()) if w not in FUNCTION_WORDS}


def _released_texts(task: TaskConfig, notebook_id: str):
    """The text students get for one part: the locked Markdown cells of its notebook (copied unchanged by the
    release), then the text files of the task's template (a repository task's read_me and task texts)."""
    file = task.notebook(notebook_id).file
    source = CONFIG.task_dir(task.id) / "source" / file
    if file and source.is_file():
        for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell["cell_type"] == "markdown" and meta.get("locked") and not meta.get("solution"):
                yield "".join(cell["source"])
    template = CONFIG.task_dir(task.id) / "template"
    for path in sorted(template.rglob("*")) if template.is_dir() else []:
        if path.suffix in (".txt", ".md") and path.is_file():
            yield path.read_text(encoding="utf-8")


def pass_condition(task: TaskConfig, notebook_id: str) -> str | None:
    """The released pass condition of one part: from its marker to the end of that paragraph, marker left out;
    None when the released text states none."""
    for text in _released_texts(task, notebook_id):
        for paragraph in text.split("\n\n"):
            for marker in MARKERS:
                if marker in paragraph:
                    return _normal(paragraph[paragraph.index(marker) + len(marker):])
    return None


def reported_criteria(task: TaskConfig) -> dict[str, bool]:
    """Every criterion id the grader and the task's rubric report, with the rubric's own `required` marker."""
    found = {}
    for part in task.parts():
        if part.file:
            names = ("submitted", "outputs", "executed") if task.require_outputs else ("submitted", "executed")
            found.update({f"{part.id}.{name}": True for name in names})
    folder = CONFIG.task_dir(task.id) / "rubric"
    proc = subprocess.run([sys.executable, "-c", _COLLECT, str(folder)], cwd=folder, capture_output=True,
                          text=True, timeout=300)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("CRITERIA ")), None)
    assert proc.returncode == 0 and line, proc.stdout[-2000:] + proc.stderr[-2000:]
    for notebook_id, name, required in json.loads(line.removeprefix("CRITERIA ")):
        found[f"{notebook_id}.{name}"] = required
    return found


def _final_required(task: TaskConfig, reported: dict[str, bool]) -> dict[str, bool]:
    """Whether each criterion decides the verdict once grader.toml's marking is applied (as check.judge does)."""
    return {cid: (task.marking(cid).required if task.marking(cid) else rubric) for cid, rubric in reported.items()}


@pytest.fixture(scope="module", params=sorted(CONFIG.tasks))
def task_criteria(request):
    task = CONFIG.tasks[request.param]
    return task, reported_criteria(task)


def test_marked_criteria_exist(task_criteria):
    """grader.toml marks only criteria the grader or the rubric reports (a typo would silently change nothing)."""
    task, reported = task_criteria
    unknown = sorted(set(task.criteria) - set(reported))
    assert not unknown, f"{task.id}: grader.toml marks criteria no check reports: {unknown}"


def test_required_criteria_are_the_pass_condition(task_criteria):
    """Per notebook: each required criterion claims words of the released pass condition, each claim is in
    that text, every part of the text is claimed by a required criterion, and advice claims nothing."""
    task, reported = task_criteria
    required = _final_required(task, reported)
    for part in task.parts():
        condition = pass_condition(task, part.id)
        if condition is None:
            pytest.fail(f"{task.id}/{part.id}: the released text states no pass condition ({' / '.join(MARKERS)})")
        ours = {cid: req for cid, req in required.items() if cid.startswith(f"{part.id}.")}
        claims = {cid: [_normal(p) for p in task.marking(cid).phrases] if task.marking(cid) else []
                  for cid in ours}
        unclaimed = sorted(cid for cid, req in ours.items() if req and not claims[cid])
        assert not unclaimed, f"{task.id}: required criteria that name no words of the pass condition: {unclaimed}"
        absent = sorted({p for phrases in claims.values() for p in phrases if p.lower() not in condition.lower()})
        assert not absent, f"{task.id}/{part.id}: claimed phrases not in the pass condition «{condition}»: {absent}"
        claimed_words = set().union(*(_content_words(p) for cid, ps in claims.items() if ours[cid] for p in ps))
        uncovered = sorted(_content_words(condition) - claimed_words)
        assert not uncovered, (f"{task.id}/{part.id}: parts of the pass condition no required criterion "
                               f"implements: {uncovered}")
        advice_claims = sorted(cid for cid, req in ours.items() if not req and claims[cid])
        assert not advice_claims, f"{task.id}: advice criteria claim words of the pass condition: {advice_claims}"


def test_pass_condition_is_found_in_released_text():
    """The reader finds each task-5 notebook's pass condition, and only the condition (an honest anchor)."""
    task = CONFIG.tasks["task5"]
    clustering = pass_condition(task, "clustering")
    assert clustering == ("das Notebook ohne Fehler von oben nach unten durchläuft und die vier Plots sowie der "
                          "Vergleich vorhanden sind. Laden Sie das Notebook mit Ausgaben hoch.")
    assert pass_condition(task, "finetune").startswith("Das Notebook läuft von oben nach unten ohne Fehler.")


# --- The marking at work: config, judge, feedback -----------------------------------------------------------

BASE = """
[course]
name = "Kurs"
short_name = "K"

[tasks.t1]
title = "Aufgabe"
[[tasks.t1.notebooks]]
id = "nb"
file = "nb.ipynb"

[tasks.t1.criteria]
"""


@pytest.mark.parametrize("marking, line", [
    ('"other.plots" = "advice"', "tasks.t1: criteria.other.plots: not '<notebook id>.<criterion>' of a notebook "
                                 "of this task (notebooks: nb)"),
    ('"nb.plots" = { marking = "advice", implements = "die vier Plots" }',
     "tasks.t1.criteria.nb.plots: an advice criterion implements no part of the pass condition (drop `implements`)"),
])
def test_bad_marking_is_one_line(tmp_path, marking, line):
    """A marking of another notebook's criterion, or advice that claims the pass condition: one line, exit 3."""
    from conftest import make_workspace

    workspace = make_workspace(tmp_path / "w", BASE + marking + "\n", REPO / "assignments")
    result = workspace.cli("status", "t1")
    assert result.exit_code == 3
    assert result.stderr.strip().startswith(f"error: {workspace.config_path}: {line}"), result.stderr


@pytest.fixture(scope="module")
def unexecuted_task4(tmp_path_factory):
    """Task 4's reference upload with an execution folder that holds nothing: every rubric criterion fails."""
    from autograder.check import SubmittedNotebook
    from autograder.execute import ExecutionOutcome
    from autograder.sandbox import ExitReason

    folder = tmp_path_factory.mktemp("execution")
    outcome = ExecutionOutcome(key="k", reason=ExitReason.OK, runner_status="completed", message="",
                               wall_seconds=1.0, memory_peak_mb=None, folder=folder)
    upload = CONFIG.task_dir("task4") / "solutions" / "reference" / "task4_analysis.ipynb"
    return [SubmittedNotebook("analysis", upload, outcome)]


def test_marking_wins_over_the_rubric(unexecuted_task4):
    """Marked advice never decides: with every rubric criterion advice, failing them all still passes, and each
    criterion leaves judge carrying its final `required`."""
    from autograder.check import judge
    from autograder.config import CriterionMarking

    task = CONFIG.tasks["task4"]
    reported = reported_criteria(task)
    advice = {cid: CriterionMarking(marking="advice") for cid in reported
              if cid.split(".")[1] not in ("submitted", "outputs", "executed")}
    judgement = judge(CONFIG, task.model_copy(update={"criteria": advice}), unexecuted_task4)
    by_id = {c.id: c for c in judgement.criteria}
    assert set(advice) <= set(by_id) and all(by_id[cid].state.value == "fail" for cid in advice)
    assert all(not by_id[cid].required for cid in advice)
    assert judgement.verdict == "pass"

    as_configured = judge(CONFIG, task, unexecuted_task4)
    assert as_configured.verdict == "fail"
    assert {c.id for c in as_configured.criteria if not c.required} == {"analysis.axis_labels"}


def test_unknown_marked_criterion_is_a_grader_error(unexecuted_task4):
    """A marking naming a criterion nobody reports is found when the rubric reports: `error`, never a verdict."""
    from autograder.check import judge
    from autograder.config import CriterionMarking

    task = CONFIG.tasks["task4"]
    typo = {**task.criteria, "analysis.axis_label": CriterionMarking(marking="advice")}
    judgement = judge(CONFIG, task.model_copy(update={"criteria": typo}), unexecuted_task4)
    fault = next(c for c in judgement.criteria if c.id == "grader.criteria")
    assert judgement.verdict == "error"
    assert fault.detail.startswith("tasks.task4.criteria.analysis.axis_label: no such criterion")


def test_feedback_shows_advice_apart():
    """A pass with failed advice says so: the advice under "Hinweise", not under "Nicht erfüllt"."""
    from autograder.criteria import Criterion, State
    from autograder.feedback import feedback_html
    from autograder.record import ParticipantResult

    labels = Criterion(id="clustering.axis_labels", title="Alle Clustering-Plots haben Titel und beschriftete Achsen",
                       required=False, state=State.FAIL, message="Diese Plots haben unbeschriftete Achsen.")
    plots = Criterion(id="clustering.plots", title="Vier Plots", state=State.PASS)
    result = ParticipantResult(participant="1", name="N", email="", status="submitted", verdict="pass",
                               automatic_verdict="pass", provisional=False, criteria=(labels, plots))
    page = feedback_html(CONFIG, CONFIG.tasks["task5"], result)
    assert "Nicht erfüllt" not in page
    assert ("<p>Hinweise (für die Bewertung nicht entscheidend):</p><ul><li><strong>Alle Clustering-Plots haben "
            "Titel und beschriftete Achsen</strong>: Diese Plots haben unbeschriftete Achsen.</li></ul>") in page
    assert "Alle verlangten Kriterien sind erfüllt." in page
