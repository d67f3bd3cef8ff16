"""Facts of task 5, part 3, measured by the grader's own command: `python -I /grader/facts.py INPUT_DIR NOTEBOOK`.

Runs in a fresh sandbox of its own after the notebook's run, in a process that loads no student code: the
folder `modell` the notebook left behind comes as data, the runner's tar of it (/grader/kept.tar, with its
manifest keep.json: kept, missing, not-a-folder or too-large), unpacked here: regular files and folders only.
The model is loaded as anyone who gets the folder would, but never by unpickling: transformers'
`from_pretrained` with `local_files_only`, `use_safetensors` and without remote code. A folder that holds its
weights only as a pickle (`pytorch_model.bin`, torch.load) is reported as such and not loaded. The loaded model
then classifies
- the posts of /grader/probe-data/texts.json (generated with another seed, not in the public corpus; their
  labels are only in the grader's hidden/), and
- the notebook's public test split, built here from the public data as the released notebook builds
  `test_texts` (cell "Daten laden": 20 Newsgroups test subset without headers, footers and quotes, the first
  TEST_SIZE of a permutation with seed 1), with the parameters the notebook ran with (/grader/job.json).

Uses only the runtime's own packages (transformers, torch, numpy, scikit-learn), never a file of the upload
as code. Prints one JSON document on stdout (the only channel back): run_status, kept {carried, folders,
bytes, limit_bytes, skipped, found_bytes, error}, saved_model {folder, status, exists, files, weights, model,
tokenizer, num_labels, error}, hidden_predictions {indices, error}, test_split {n, test_size, max_length,
accuracy, error, model_error}. It holds no expected value; rubric/test_finetune.py judges what it prints.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

JOB_FILE = Path("/grader/job.json")  # execute.FACTS_JOB_FILE
MODEL_FOLDER = "modell"  # the folder the task names ("aus dem Ordner modell")
MANIFEST = "keep.json"
MAX_FILES_LISTED, MAX_TEXT = 200, 300
# The released notebook's values outside fast mode (cell "Daten laden"), used when no parameter replaces them.
FULL_TEST_SIZE, FULL_MAX_LENGTH = None, 256
DEFAULTS = {"FAST_MODE": False, "FAST_TEST_SIZE": 200, "FAST_MAX_LENGTH": 32}
TEST_SEED = 1
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_TEXT]


def unpack(kept: str | None, target: Path) -> dict:
    """Unpack the runner's tar into target (nothing outside it, no links, no devices); what it says it holds."""
    found: dict = {"carried": False, "folders": {}, "error": None}
    if not kept:
        return found
    try:
        with tarfile.open(kept, mode="r:") as tar:
            manifest = json.load(tar.extractfile(MANIFEST))
            _extract(tar, [m for m in tar.getmembers() if m.name != MANIFEST], target)
    except (OSError, tarfile.TarError, ValueError, KeyError, TypeError) as exc:
        found["error"] = short(exc)
        return found
    found.update(carried=True, **{k: manifest.get(k) for k in ("folders", "bytes", "limit_bytes", "skipped",
                                                                  "found_bytes")})
    return found


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], target: Path) -> None:
    """Regular files and folders, each inside target; anything else (a link, a device, a path leading out) is
    refused. By hand: tarfile's "data" filter came with Python 3.11.4, and the runtime image has 3.11.2."""
    root = target.resolve()
    for member in members:
        path = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not path.is_relative_to(root) or path == root:
            raise ValueError(f"tar member {member.name!r} refused")
        if member.isdir():
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with tar.extractfile(member) as source, open(path, "wb") as out:
            shutil.copyfileobj(source, out)


def load(folder: Path, status: str | None) -> tuple[dict, object, object]:
    """The saved model and tokenizer, loaded without unpickling anything; (facts, model, tokenizer)."""
    saved: dict = {"folder": MODEL_FOLDER, "status": status, "exists": status == "kept" and folder.is_dir(),
                   "files": [], "weights": "none", "model": False, "tokenizer": False, "num_labels": None,
                   "error": None}
    if not saved["exists"]:
        return saved, None, None
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    saved["files"] = names[:MAX_FILES_LISTED]
    if any(n.endswith(".safetensors") for n in names):
        saved["weights"] = "safetensors"
    elif any(n.split("/")[-1] in PICKLED_WEIGHTS for n in names):
        saved["weights"] = "pickle-only"
    model = tokenizer = None
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if saved["weights"] == "safetensors":
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, trust_remote_code=False)
            saved.update(model=True, num_labels=int(model.config.num_labels))
        except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
            saved["error"] = short(exc)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        saved["tokenizer"] = True
    except Exception as exc:  # noqa: BLE001
        saved["error"] = saved["error"] or short(exc)
    return saved, model, tokenizer


def classifier(model, tokenizer, max_length: int):
    """predict(texts) -> category indices, in batches of 32 with the notebook's MAX_LENGTH."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()

    def predict(texts: list[str]) -> list[int]:
        found: list[int] = []
        with torch.no_grad():
            for start in range(0, len(texts), 32):
                batch = tokenizer(list(texts[start:start + 32]), truncation=True, padding=True,
                                  max_length=max_length, return_tensors="pt")
                batch = {k: v.to(device) for k, v in batch.items()}
                found.extend(int(i) for i in model(**batch).logits.argmax(-1).tolist())
        return found

    return predict


def sizes(parameters: dict) -> tuple[int | None, int]:
    """TEST_SIZE and MAX_LENGTH as the released notebook derives them from its parameters."""
    values = {**DEFAULTS, **parameters}
    if values["FAST_MODE"]:
        return int(values["FAST_TEST_SIZE"]), int(values["FAST_MAX_LENGTH"])
    return FULL_TEST_SIZE, FULL_MAX_LENGTH


def test_split(test_size: int | None) -> tuple[list[str], list[int]]:
    """The released notebook's test_texts and test_labels, from the public data."""
    import numpy as np
    from sklearn.datasets import fetch_20newsgroups

    test = fetch_20newsgroups(subset="test", remove=("headers", "footers", "quotes"), download_if_missing=False)
    chosen = np.random.default_rng(TEST_SEED).permutation(len(test.data))[:test_size]
    return [test.data[i] for i in chosen], [int(test.target[i]) for i in chosen]


def measure(job: dict, work: Path) -> dict:
    kept = unpack(job.get("kept"), work)
    status = (kept.get("folders") or {}).get(MODEL_FOLDER)
    saved, model, tokenizer = load(work / MODEL_FOLDER, status)
    test_size, max_length = sizes(job.get("parameters") or {})
    facts = {"run_status": job.get("runner_status"), "kept": kept, "saved_model": saved,
             "hidden_predictions": {"indices": None, "error": None},
             "test_split": {"n": 0, "test_size": test_size, "max_length": max_length, "accuracy": None,
                            "error": None, "model_error": None}}
    try:  # the grader's own data: a failure here is the grader's, reported apart from the model's
        texts, labels = test_split(test_size)
        hidden = json.loads((Path(job["probe_data"]) / "texts.json").read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001
        facts["test_split"]["error"] = short(exc)
        return facts
    facts["test_split"]["n"] = len(texts)
    if model is None or tokenizer is None:
        return facts
    predict = classifier(model, tokenizer, max_length)
    try:
        facts["hidden_predictions"]["indices"] = predict(hidden)
    except Exception as exc:  # noqa: BLE001
        facts["hidden_predictions"]["error"] = short(exc)
    try:
        found = predict(texts)
        facts["test_split"]["accuracy"] = sum(int(p == y) for p, y in zip(found, labels)) / len(labels)
    except Exception as exc:  # noqa: BLE001
        facts["test_split"]["model_error"] = short(exc)
    return facts


def _private_stdout():
    """Keep the real stdout for the facts; whatever a library prints goes to stderr."""
    sys.stdout.flush()
    private = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(private, "wb")


def _make_undumpable() -> None:
    """PR_SET_DUMPABLE=0: no other process of this uid can open /proc/<this pid>/fd/*."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    channel = _private_stdout()
    _make_undumpable()
    if len(argv) not in (1, 2):
        print("usage: facts.py INPUT_DIR [NOTEBOOK]", file=sys.stderr)
        return 2
    work = Path.cwd() / "kept"  # the sandbox's scratch, never the upload
    work.mkdir()
    facts = measure(json.loads(JOB_FILE.read_text(encoding="utf-8")), work)
    channel.write(json.dumps(facts).encode("utf-8"))
    channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
