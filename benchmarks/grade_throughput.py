"""How fast `grader grade` is against the alternatives, on task 5's clustering notebook (issue 16).

One run, in a folder of its own (never the course's data):

  (a) plain papermill, one notebook after the other in this process: no sandbox, no rubric (the baseline);
  (b) `nbgrader autograde` of the same notebooks in an nbgrader-format version of the task;
  (c) `grader grade` with 1 and with 2 workers, each in a fresh workspace (no cache shared between them);
  (d) an empty notebook graded N times with 1 worker: fixed overhead per submission =
      (grader time - papermill time of the same notebooks) / N, each the faster of two runs;
  (e) a second `grader grade` over the same submissions (nothing to do).

The submissions are task 5's clustering solutions (reference, valid alternatives, typical mistakes: about
three in five pass), each copy made distinct by a comment, as every student's notebook is; they go through
the Moodle sample generator (autograder/sample.py) and `grader import` like a course's. Each time is printed
with its ratio to (a); the last line is machine-readable:

  RESULT speedup_vs_papermill=<x> speedup_vs_nbgrader=<x> overhead_s=<x> regrade_s=<x>

Usage: python benchmarks/grade_throughput.py [--quick] [--submissions N] [--empty N] [--workdir DIR]
                                            [--backend fork|bwrap]
(`make benchmark`; --quick: 8 submissions and 5 empty notebooks, a few minutes). Needs what `grader grade`
needs (root, bubblewrap, `make data`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "assignments" / "task5"
NOTEBOOK = "task5_clustering.ipynb"
# Which solutions the submissions are copies of, and how many of each: a course's mix, most pass.
MIX = {
    "reference": 6, "alt_plot_markers": 3, "alt_seaborn": 3, "alt_standardized": 3, "alt_subplots": 3,
    "alt_unlabelled_axes": 3, "wrong_default_eps": 2, "wrong_kmeans_k2": 2, "wrong_no_comparison": 2,
    "wrong_no_dbscan": 2, "wrong_no_outputs": 3, "wrong_noise_dropped": 2, "wrong_outputs_but_raises": 3,
    "wrong_untouched_release": 3,
}
UID = 64100  # sandbox uids of its own, away from the tests' (61000, 62000)

CONFIG = """
[course]
name = "Benchmark"
short_name = "BENCH"

[paths]
offline_data = "{offline}"

[sandbox]
backend = "{backend}"
uid = {uid}
workers = {workers}

[runtimes.cpu]
kind = "cpu"

[tasks.task5]
title = "Aufgabe 5 – Clustering (Benchmark)"
runtime = "cpu"
cell_timeout = 120
notebook_timeout = 600
memory_mb = 3072
require_outputs = true

[[tasks.task5.notebooks]]
id = "clustering"
file = "task5_clustering.ipynb"
title = "Teil 1 – Clustering"

[tasks.task5.rubric]
kmeans_blobs_min_ari = 0.9
dbscan_moons_min_ari = 0.9
comparison_min_words = 40

[tasks.task5.criteria]
"clustering.axis_labels" = "advice"
"""


@dataclass
class Timing:
    label: str
    seconds: float
    note: str = ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 submissions, 5 empty notebooks (a few minutes)")
    parser.add_argument("--submissions", type=int, help="how many clustering submissions (default 40)")
    parser.add_argument("--empty", type=int, help="how many empty notebooks for the overhead (default 20)")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--backend", default="fork", choices=["fork", "bwrap"],
                        help="sandbox backend of (c), (d) and (e) (default: fork)")
    args = parser.parse_args()
    count = args.submissions or (8 if args.quick else 40)
    empties = args.empty or (5 if args.quick else 20)
    if args.workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)
        args.workdir.mkdir(parents=True)
        return run(args.workdir.resolve(), count, empties, args.backend)
    with tempfile.TemporaryDirectory(prefix="grade-throughput-") as tmp:
        return run(Path(tmp), count, empties, args.backend)


def run(work: Path, count: int, empties: int, backend: str) -> int:
    assignments = _assignments(work / "assignments", count, empties)
    print(f"benchmark in {work}: {count} clustering submissions, {empties} empty notebooks, "
          f"{os.cpu_count()} cores, backend {backend}", flush=True)
    corpus = _sample(work / "corpus", assignments, "task5")
    empty = _sample(work / "empty-corpus", assignments, "empty")

    times: dict[str, Timing] = {}

    def took(key: str, timing: Timing) -> None:
        times[key] = timing
        print(f"  {timing.label}: {timing.seconds:.1f} s" + (f"  {timing.note}" if timing.note else ""), flush=True)

    took("a", Timing("(a) papermill, sequential, no sandbox/rubric", _papermill(corpus, work / "pm")))
    took("b", Timing("(b) nbgrader autograde", _nbgrader(corpus, work / "nbgrader")))
    workspaces = {}
    for workers in (1, 2):
        ws = workspaces[workers] = _workspace(work / f"grader-w{workers}", assignments, workers, backend)
        _grader(ws, "import", "task5", corpus.archive, "--worksheet", corpus.worksheet)
        seconds, output = _timed_grader(ws, "grade", "task5", "--workers", str(workers))
        wrong = _wrong_verdicts(ws, corpus)
        took(f"c{workers}", Timing(f"(c) grader grade --workers {workers}", seconds,
                                   f"verdicts as expected: {count - len(wrong)}/{count}"
                                   + (f" (differ: {', '.join(wrong)})" if wrong else "")))
        _print_stage_line(output)
    # Twice each, alternating, and the faster of each pair: one slow kernel exit or a neighbour's burst moves a
    # difference of seconds more than the overhead it measures.
    grader_runs, papermill_runs = [], []
    for attempt in (1, 2):
        papermill_runs.append(_papermill(empty, work / f"pm-empty-{attempt}"))
        ws = _workspace(work / f"grader-empty-{attempt}", assignments, 1, backend)
        _grader(ws, "import", "empty", empty.archive, "--worksheet", empty.worksheet)
        seconds, output = _timed_grader(ws, "grade", "empty", "--workers", "1")
        grader_runs.append(seconds)
    grader_empty, papermill_empty = min(grader_runs), min(papermill_runs)
    overhead = (grader_empty - papermill_empty) / empties
    took("d", Timing(f"(d) {empties} empty notebooks, grader grade --workers 1", grader_empty,
                     f"papermill {papermill_empty:.1f} s; overhead {overhead:.2f} s per submission (runs: grader "
                     f"{', '.join(f'{x:.1f}' for x in grader_runs)} s, papermill "
                     f"{', '.join(f'{x:.1f}' for x in papermill_runs)} s)"))
    _print_stage_line(output)
    seconds, output = _timed_grader(workspaces[2], "grade", "task5", "--workers", "2")
    took("e", Timing("(e) second grader grade (nothing to do)", seconds,
                     next((line for line in output.splitlines() if line.startswith("Graded")), "")))
    _print_stage_line(output)
    took("s", Timing("    grader status", _timed_grader(workspaces[2], "status", "task5")[0]))

    base = times["a"].seconds
    print()
    for timing in times.values():
        print(f"{timing.label:<52} {timing.seconds:8.1f} s  {timing.seconds / base:6.2f} x (a)"
              + (f"  {timing.note}" if timing.note else ""))
    fastest = times["c2"].seconds
    print(f"RESULT speedup_vs_papermill={base / fastest:.2f} speedup_vs_nbgrader={times['b'].seconds / fastest:.2f} "
          f"overhead_s={overhead:.2f} regrade_s={times['e'].seconds:.2f}")
    return 0


# --- The submissions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    archive: Path
    worksheet: Path
    notebooks: dict[str, Path]  # participant id -> the notebook as uploaded
    expected: dict[str, str]  # participant id -> expected verdict


def _assignments(root: Path, count: int, empties: int) -> Path:
    """Task 5 cut down to its clustering notebook (rubric, data, hidden labels, source), with `count`
    solutions copied from task 5's, and a task `empty` with the same rubric and `empties` empty notebooks."""
    task = root / "task5"
    (task / "rubric").mkdir(parents=True)
    for name in ("test_clustering.py", "plotted_clusters.py", "settings.toml"):
        shutil.copy2(TASK_DIR / "rubric" / name, task / "rubric" / name)
    shutil.copytree(TASK_DIR / "data", task / "data")
    (task / "hidden").mkdir()
    for name in ("blobs_labels.csv", "moons_labels.csv"):
        shutil.copy2(TASK_DIR / "hidden" / name, task / "hidden" / name)
    (task / "source").mkdir()
    shutil.copy2(TASK_DIR / "source" / NOTEBOOK, task / "source" / NOTEBOOK)
    kinds = [kind for kind, n in MIX.items() for _ in range(n)]
    for index in range(count):
        kind = kinds[index % len(kinds)]
        folder = task / "solutions" / f"{kind}_{index:03d}"
        folder.mkdir(parents=True)
        shutil.copy2(TASK_DIR / "solutions" / kind / "expected.toml", folder / "expected.toml")
        _distinct_copy(TASK_DIR / "solutions" / kind / NOTEBOOK, folder / NOTEBOOK, index)
    empty = root / "empty"
    shutil.copytree(task, empty, ignore=shutil.ignore_patterns("solutions"))
    for index in range(empties):
        folder = empty / "solutions" / f"empty_{index:03d}"
        folder.mkdir(parents=True)
        (folder / "expected.toml").write_text('verdict = "fail"\n', encoding="utf-8")
        nb = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "only", "metadata": {},
                         "outputs": [], "source": f"x = {index}"}],
              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
              "nbformat": 4, "nbformat_minor": 5}
        (folder / NOTEBOOK).write_text(json.dumps(nb), encoding="utf-8")
    return root


def _distinct_copy(source: Path, target: Path, index: int) -> None:
    """The solution with a comment of its own in its last solution cell: every student's file differs."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    solution = [c for c in code if c.get("metadata", {}).get("nbgrader", {}).get("solution")] or code
    cell = solution[-1]
    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    cell["source"] = f"{text}\n# Abgabe {index}"
    target.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")


def _sample(out: Path, assignments: Path, task: str) -> Corpus:
    """The Moodle ZIP and worksheet autograder/sample.py builds from the task's solutions."""
    from autograder.config import load_config
    from autograder.sample import build_sample

    folder = out.parent / f"{out.name}-config"
    config = load_config(_write_config(folder, assignments, 1))
    archive, worksheet = build_sample(config, config.task(task), out)
    participants = json.loads((out / "participants.json").read_text(encoding="utf-8"))
    solutions = assignments / task / "solutions"
    return Corpus(archive, worksheet, {pid: solutions / p["solution"] / NOTEBOOK for pid, p in participants.items()},
                  {pid: p["verdict"] for pid, p in participants.items()})


def _write_config(folder: Path, assignments: Path, workers: int, backend: str = "bwrap") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = CONFIG.format(offline=REPO / ".offline-data", uid=UID, workers=workers, backend=backend)
    text += "\n" + text[text.index("[tasks.task5]"):].replace("tasks.task5", "tasks.empty")
    (folder / "grader.toml").write_text(text, encoding="utf-8")
    if not (folder / "assignments").exists():
        (folder / "assignments").symlink_to(assignments)
    return folder / "grader.toml"


def _workspace(folder: Path, assignments: Path, workers: int, backend: str) -> Path:
    return _write_config(folder, assignments, workers, backend)


# --- The contestants --------------------------------------------------------------------------------------


def _papermill(corpus: Corpus, out: Path) -> float:
    """Seconds for papermill to run every notebook, one after the other, in this process (errors included)."""
    import papermill
    import logging

    logging.getLogger("papermill").setLevel(logging.ERROR)
    out.mkdir(parents=True)
    data_dir = str(TASK_DIR / "data")
    started = time.monotonic()
    for participant, notebook in corpus.notebooks.items():
        try:
            papermill.execute_notebook(str(notebook), str(out / f"{participant}.ipynb"),
                                       parameters={"DATA_DIR": data_dir}, kernel_name="python3",
                                       progress_bar=False, cwd=str(out))
        except papermill.PapermillExecutionError:
            pass  # a student's error: the run still counts
    return time.monotonic() - started


def _nbgrader(corpus: Corpus, course: Path) -> float:
    """Seconds for `nbgrader autograde` of every notebook, in a course built from the task's source notebook
    (`nbgrader generate_assignment`, then one submitted/<id>/task5/ folder per participant, data beside it)."""
    source = course / "source" / "task5"
    source.mkdir(parents=True)
    _nbgrader_format(TASK_DIR / "source" / NOTEBOOK, source / NOTEBOOK)
    shutil.copytree(TASK_DIR / "data", source / "data")
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.root = %r\nc.CourseDirectory.course_id = 'bench'\n"
        "c.ExecutePreprocessor.timeout = 120\n" % str(course), encoding="utf-8")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    nbgrader = [sys.executable, "-m", "nbgrader"]
    _check(subprocess.run([*nbgrader, "generate_assignment", "task5", "--force"], cwd=course, env=env,
                          capture_output=True, text=True), "nbgrader generate_assignment")
    for participant, notebook in corpus.notebooks.items():
        folder = course / "submitted" / participant / "task5"
        folder.mkdir(parents=True)
        _nbgrader_format(notebook, folder / NOTEBOOK)
        shutil.copytree(TASK_DIR / "data", folder / "data")
    started = time.monotonic()
    _check(subprocess.run([*nbgrader, "autograde", "task5", "--force"], cwd=course, env=env,
                          capture_output=True, text=True), "nbgrader autograde")
    seconds = time.monotonic() - started
    graded = len(list((course / "autograded").glob(f"*/task5/{NOTEBOOK}")))
    if graded != len(corpus.notebooks):
        print(f"  nbgrader autograded {graded} of {len(corpus.notebooks)} notebooks", flush=True)
    return seconds


def _nbgrader_format(source: Path, target: Path) -> None:
    """The notebook as nbgrader's format (v3) wants it: our free-text answer cells are markdown solution cells
    without points, which nbgrader only accepts as manually graded answers (grade: true, points)."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "markdown" and meta.get("solution") and not meta.get("grade"):
            meta.update(grade=True, points=1)
    target.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")


def _grader(config: Path, *args: object) -> str:
    proc = subprocess.run([sys.executable, "-m", "autograder.cli", "-c", str(config), *map(str, args)],
                          capture_output=True, text=True, cwd=config.parent)
    if proc.returncode not in (0, 10):  # 10: graded, with errors (reported with the verdicts)
        raise SystemExit(f"grader {' '.join(map(str, args))} failed ({proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def _timed_grader(config: Path, *args: object) -> tuple[float, str]:
    started = time.monotonic()
    output = _grader(config, *args)
    return time.monotonic() - started, output


def _wrong_verdicts(config: Path, corpus: Corpus) -> list[str]:
    rows = json.loads(_grader(config, "status", "task5", "--json"))
    found = {row["participant"]: row["verdict"] for row in rows}
    return sorted(f"{pid}: {found.get(pid)} (expected {verdict})" for pid, verdict in corpus.expected.items()
                  if found.get(pid) != verdict)


def _print_stage_line(output: str) -> None:
    """The per-stage line `grader grade` prints after its summary, if this version prints one."""
    for line in output.splitlines():
        if line.startswith("Stages"):
            print(f"  {line}", flush=True)


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")


if __name__ == "__main__":
    sys.exit(main())
