"""Task 3's repository facts are measured by the grader's own command in a fresh sandbox, out of the notebook's
reach: a notebook that fakes everything the old in-kernel probe relied on gets the verdict of an honest one."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from conftest import REPO, clone_bundle, moodle_zip, zipped

pytestmark = pytest.mark.sandbox  # starts sandboxes (root): not in `make test-fast`

SOLUTIONS = REPO / "assignments" / "task3" / "solutions"
HONEST, ATTACKER = "5000001", "5000002"

# Appended to the team's notebook as its last cell, where it runs after all their work and just before an
# in-kernel probe would. Every attack is wrapped so that the cell itself never fails ("no_errors" stays equal).
ATTACK = r'''
import functools, json, os, pathlib, stat, subprocess
JONAS = {"hash": "0123456789abcdef0123456789abcdef01234567", "author": "Jonas Müller",
         "email": "jonas.mueller@stud.example.edu", "subject": "Auswertung und Diagramm ergänzt"}
def _attempt(step):
    try:
        step()
    except Exception:
        pass
# A real commit by the missing team member, in the copy the notebook runs in.
_attempt(lambda: subprocess.run(["git", "-c", "user.name=Jonas Müller", "-c", "user.email=jonas@stud.example.edu",
                                 "-c", "safe.directory=*", "commit", "--allow-empty", "-q", "-m",
                                 "Auswertung und Diagramm ergänzt"], capture_output=True))
# Fake files: a built PDF, a README with every structure, a .gitignore.
def _files():
    pathlib.Path("task").mkdir(exist_ok=True)
    pathlib.Path("task/task1.pdf").write_bytes(b"%PDF-1.5 fake")
    pathlib.Path("README.md").write_text("# A\n\n## B\n\n- x\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                                         "[l](https://x.y)\n\n```\nc\n```\n")
    pathlib.Path(".gitignore").write_text("*.aux\n*.log\n*.synctex.gz\n*.fls\n*.fdb_latexmk\n")
_attempt(_files)
# A fake git and latexmk first on PATH.
def _fake_tools():
    fake = pathlib.Path("fakebin").resolve()
    fake.mkdir(exist_ok=True)
    (fake / "git").write_text('#!/bin/sh\n/usr/bin/git "$@"\ncase "$*" in *log*) printf "%s\\037%s\\037%s\\037%s\\036" '
                              + " ".join(f"'{JONAS[k]}'" for k in ("hash", "author", "email", "subject")) + ';; esac\n')
    (fake / "latexmk").write_text('#!/bin/sh\nfor a in "$@"; do :; done\ntouch "${a%.tex}.pdf"\nexit 0\n')
    for tool in ("git", "latexmk"):
        (fake / tool).chmod(0o755)
    os.environ["PATH"] = f"{fake}:{os.environ.get('PATH', '')}"
_attempt(_fake_tools)
def _doctored(value):
    if isinstance(value, dict) and "commits" in value:
        value = dict(value, commits=[*value["commits"], JONAS], ignored=value.get("ignored", []))
        value["latex"] = dict(value.get("latex") or {}, found=True, ok=True, errors="")
    return value
# The probe's reporting, and the functions it calls.
def _patch_report():
    import autograder.inside.probe as probe
    original = probe.report
    probe.report = lambda name, value: original(name, _doctored(value))
_attempt(_patch_report)
_real_dumps = json.dumps
json.dumps = functools.wraps(_real_dumps)(lambda value, *a, **k: _real_dumps(_doctored(value), *a, **k))
_real_popen, _real_run = subprocess.Popen, subprocess.run
def _fake_argv(argv):
    if isinstance(argv, (list, tuple)) and argv and argv[0] in ("git", "latexmk"):
        return [str(pathlib.Path("fakebin").resolve() / argv[0]), *argv[1:]]
    return argv
class _Popen(_real_popen):
    def __init__(self, args, *rest, **kwargs):
        super().__init__(_fake_argv(args), *rest, **kwargs)
subprocess.Popen = _Popen
subprocess.run = lambda args, *rest, **kwargs: _real_run(_fake_argv(args), *rest, **kwargs)
# Shows that the attack got this far and that git, in the folder the notebook ran in, now names both authors.
print("authors seen here:", sorted(set(subprocess.run(["git", "log", "--format=%an"], capture_output=True,
                                                      text=True).stdout.split("\n")) - {""}))
'''






def _append_attack(notebook: Path) -> None:
    nb = nbformat.read(str(notebook), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(ATTACK.strip()))
    nbformat.write(nb, str(notebook))


def _outcome(row: dict) -> tuple[str, list[tuple[str, bool]]]:
    return row["verdict"], sorted((c["id"], c["passed"]) for c in row["criteria"])


@pytest.mark.slow(cost=60)
def test_notebook_cannot_fake_repository_facts(course, tmp_path):
    """A notebook that commits as the missing teammate, fakes git/latexmk on PATH, writes fake files and
    replaces report(), subprocess and json.dumps gets exactly the honest team's verdict and criteria."""
    bundle = SOLUTIONS / "wrong_one_author" / "repo.bundle"
    honest = clone_bundle(bundle, tmp_path / "honest" / "team")
    attacker = clone_bundle(bundle, tmp_path / "attacker" / "team")
    _append_attack(attacker / "task3.ipynb")  # uploaded as changed, not committed: the committed state is equal
    archive = moodle_zip(tmp_path / "moodle.zip", {HONEST: {"team.zip": zipped(honest)},
                                                   ATTACKER: {"team.zip": zipped(attacker)}})
    assert course.cli("import", "task3", archive).exit_code == 0
    result = course.cli("grade", "task3")
    assert result.exit_code == 0, result.output
    status = course.status("task3")
    assert _outcome(status[HONEST])[0] == "fail"
    assert [c["id"] for c in status[HONEST]["criteria"] if not c["passed"]] == ["repo.authors"]
    assert _outcome(status[ATTACKER]) == _outcome(status[HONEST])
    authors = next(c for c in status[ATTACKER]["criteria"] if c["id"] == "repo.authors")
    assert "Jonas" not in authors["message"]
    shown = "\n".join("".join(output.get("text", "")) for path in (course.root / "runs").rglob("executed.ipynb")
                      for cell in nbformat.read(str(path), as_version=4).cells for output in cell.get("outputs", []))
    assert "'Jonas Müller', 'Lena Schmidt']" in shown, "the attack did not run to its end inside the kernel"


# --- Task 5, part 3: the saved model is measured outside the kernel ------------------------------------------

FINETUNE = REPO / "assignments" / "task5" / "solutions"
# A payload that, if any grader process ever imported or unpickled it, would print fake facts and end there.
FAKE_FACTS = ("import os; os.write(1, b'{\"kept\": {\"carried\": true}, \"saved_model\": {\"exists\": true}}'); "
              "os._exit(0)")
# Appended to a fine-tuning notebook as its last cell, before the in-kernel probe: everything the old probe relied
# on (report, from_pretrained, json.dumps) now claims a saved model that classifies well and a recomputed accuracy
# equal to the printed one; the folder `modell` gets a pickle-only model, a config asking for remote code and
# Python files named like the modules a loader imports. Every step is wrapped: the cell itself never fails.
FINETUNE_ATTACK = r'''
import functools, json, os, pathlib, pickle, shutil
def _attempt(step):
    try:
        step()
    except Exception:
        pass
_folder = pathlib.Path("modell")
_folder.mkdir(exist_ok=True)
class _Payload:
    def __reduce__(self):
        return (exec, (FAKE_FACTS,))
def _poison():
    if not (_folder / "model.safetensors").exists():  # nothing saved: a pickle-only model that runs code
        (_folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload()))
        config = trainer.model.config.to_dict()
        config.update(auto_map={"AutoModelForSequenceClassification": "evil.Model"})
        (_folder / "config.json").write_text(json.dumps(config))
        tokenizer.save_pretrained(str(_folder))
    for name in ("evil.py", "transformers.py", "torch.py", "sitecustomize.py", "json.py"):
        (_folder / name).write_text(FAKE_FACTS + "\n")
    (_folder / "link").symlink_to("/opt/grader-offline/models/bert/model.safetensors")
_attempt(_poison)
def _patch_loading():
    import transformers
    memory_model, memory_tokenizer = trainer.model, tokenizer
    transformers.AutoModelForSequenceClassification.from_pretrained = classmethod(lambda cls, *a, **k: memory_model)
    transformers.AutoTokenizer.from_pretrained = classmethod(lambda cls, *a, **k: memory_tokenizer)
_attempt(_patch_loading)
def _doctored(name, value):
    if name == "saved_model" or (isinstance(value, dict) and "exists" in value):
        value = dict(value or {}, exists=True, model=True, tokenizer=True, num_labels=20, error=None)
    if name == "test_recomputed" or (isinstance(value, dict) and "recomputed" in str(name)):
        value = dict(value or {}, accuracy=float(accuracy), n=200, error=None)
    return value
def _patch_report():
    import autograder.inside.probe as probe
    original = probe.report
    probe.report = lambda name, value: original(name, _doctored(name, value))
    for name in ("saved_model", "test_recomputed"):
        original(name, _doctored(name, None))
_attempt(_patch_report)
_real_dumps = json.dumps
json.dumps = functools.wraps(_real_dumps)(lambda value, *a, **k: _real_dumps(value, *a, **k))
print("attack complete:", sorted(p.name for p in _folder.iterdir()))
'''.replace("FAKE_FACTS", repr(FAKE_FACTS))


def _attacked(notebook: Path) -> str:
    nb = nbformat.read(str(notebook), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(FINETUNE_ATTACK.strip()))
    return nbformat.writes(nb)


DECISIVE = ("finetune.model_saved", "finetune.heldout_accuracy", "finetune.accuracy_reported")


def _finetune_criteria(row: dict) -> list[tuple[str, bool]]:
    return sorted((c["id"], c["passed"]) for c in row["criteria"] if c["id"].startswith("finetune."))


@pytest.mark.slow(cost=200)
def test_notebook_cannot_fake_a_saved_model(course, tmp_path):
    """A fine-tuning notebook that saved no model, then replaces report() and from_pretrained, claims a saved
    accurate model and a recomputed accuracy equal to its printed one, and leaves a pickle, remote code and Python
    files in `modell`, gets exactly the finetune criteria of the same notebook without the attack: it fails
    model_saved, heldout_accuracy and accuracy_reported. (One pair: each fine-tuning run takes minutes on a CPU;
    tests/test_solutions.py grades the other fine-tuning mistakes, whose criteria now come from the same facts.)"""
    source = FINETUNE / "finetune_wrong_not_saved" / "task5_finetune.ipynb"
    honest, attacker = "5100001", "5100002"
    uploads = {honest: {"task5_finetune.ipynb": source.read_text(encoding="utf-8")},
               attacker: {"task5_finetune.ipynb": _attacked(source)}}
    archive = moodle_zip(tmp_path / "moodle.zip", uploads)
    assert course.cli("import", "task5", archive).exit_code == 0
    result = course.cli("grade", "task5")
    assert result.exit_code == 0, result.output
    status = course.status("task5")

    failed = [c for c, passed in _finetune_criteria(status[honest]) if not passed and c in DECISIVE]
    assert failed == ["finetune.accuracy_reported", "finetune.heldout_accuracy", "finetune.model_saved"]
    assert _finetune_criteria(status[attacker]) == _finetune_criteria(status[honest])
    assert status[attacker]["verdict"] == status[honest]["verdict"]
    saved = next(c for c in status["5100002"]["criteria"] if c["id"] == "finetune.model_saved")
    assert "Pickle" in saved["message"], saved["message"]  # the pickle was seen, and never loaded
    shown = "\n".join("".join(output.get("text", "")) for path in (course.root / "runs").rglob("executed.ipynb")
                      for cell in nbformat.read(str(path), as_version=4).cells for output in cell.get("outputs", []))
    assert shown.count("attack complete:") == 1, "the attack did not run to its end inside the kernel"
    assert "'pytorch_model.bin'" in shown and "'sitecustomize.py'" in shown
