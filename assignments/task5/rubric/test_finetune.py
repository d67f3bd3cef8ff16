"""Rubric for task 5, part 3: a BERT classifier fine-tuned on 20 Newsgroups, evaluated and saved.

What decides rests on facts out of the student's reach (docs/rubric-guide.md): the facts command
(probes/finetune_facts.py) ran in a fresh sandbox after the notebook, on the folder `modell` the run left behind
(carried out as data). It loaded the model from safetensors only (never a pickle), let it classify held-out
posts whose categories only hidden/ knows, and measured its accuracy on the notebook's public test split, built
there as the released notebook builds `test_texts`. Here the held-out accuracy is recomputed against the hidden
labels; thresholds come from grader.toml. A measurement that did not finish is the grader's fault (error).

The student's claim comes from the kernel (probes/finetune_probe.py): the printed `accuracy` is compared with
the measured accuracy of the saved model on the same test posts; only rounding and padding differ, so the
tolerance is small (an accuracy taken on the training split, or from another model, differs by more). Without a
saved model nothing outside the kernel can classify, so the held-out accuracy and the printed one fail with it.
"""

from __future__ import annotations

import json
import re

import pytest


pytestmark = pytest.mark.notebook("finetune")

NOT_SAVED = ("Ohne ein gespeichertes Modell im Ordner `modell` kann nicht geprüft werden, wie gut Ihr Modell "
             "klassifiziert: siehe das Kriterium zum Speichern.")


@pytest.fixture(scope="module")
def hidden_labels(hidden_dir):
    labels = json.loads((hidden_dir / "finetune_labels.json").read_text(encoding="utf-8"))
    categories = sorted(set(labels))  # fetch_20newsgroups numbers the categories alphabetically
    return labels, categories


def _facts(nb) -> dict:
    """What the facts command measured; raises (the grader's error, never the student's fail) if it did not."""
    record = nb.facts
    if not record or not record.get("measured"):
        raise RuntimeError(f"the fine-tuning facts were not measured: {record.get('message') if record else 'no facts.json'}")
    facts = record["facts"]
    kept = facts.get("kept") or {}
    if not kept.get("carried"):  # the runner reported a notebook, so it sent the tar too
        raise RuntimeError(f"the folder `modell` was not carried out of the sandbox: {kept.get('error')}")
    if (facts.get("test_split") or {}).get("error"):
        raise RuntimeError(f"the public test split or the probe texts did not load: {facts['test_split']['error']}")
    return facts


def _loaded(facts: dict) -> bool:
    saved = facts.get("saved_model") or {}
    return bool(saved.get("model") and saved.get("tokenizer"))


def _hidden_accuracy(facts: dict, hidden_labels) -> float | None:
    labels, categories = hidden_labels
    indices = (facts.get("hidden_predictions") or {}).get("indices")
    if not isinstance(indices, list) or len(indices) != len(labels):
        return None
    truth = [categories.index(label) for label in labels]
    return sum(int(p == t) for p, t in zip(indices, truth)) / len(labels)


@pytest.mark.criterion("model_saved")
@pytest.mark.hidden  # rests on the facts command, which classifies held-out posts (probe-data/)
def test_model_saved(nb):
    """Modell und Tokenizer im Ordner `modell` gespeichert und ladbar"""
    saved = _facts(nb).get("saved_model") or {}
    if saved.get("status") == "too-large":
        found = (_facts(nb)["kept"].get("found_bytes") or {}).get("modell", 0) / 2**20
        limit = (_facts(nb)["kept"].get("limit_bytes") or 0) / 2**20
        pytest.fail(f"Der Ordner `modell` ist mit {found:.0f} MB größer als die {limit:.0f} MB, die geprüft werden. "
                    "Speichern Sie dort nur das Modell und den Tokenizer (keine Checkpoints oder Trainingsausgaben).",
                    pytrace=False)
    assert saved.get("exists"), (
        "Im Ordner `modell` wurde kein gespeichertes Modell gefunden. Speichern Sie das trainierte Modell und den "
        "Tokenizer am Ende mit `trainer.save_model(MODEL_DIR)` (oder `model.save_pretrained(MODEL_DIR)`) und "
        "`tokenizer.save_pretrained(MODEL_DIR)`."
    )
    assert saved.get("weights") != "pickle-only", (
        "Im Ordner `modell` liegen die Gewichte nur als Pickle (`pytorch_model.bin`); aus Sicherheitsgründen wird "
        "so etwas nicht geladen. Speichern Sie mit `save_pretrained` bzw. `trainer.save_model` im Standardformat "
        "safetensors (nicht mit `safe_serialization=False` oder `torch.save`)."
    )
    missing = [name for name, key in (("das Modell", "model"), ("der Tokenizer", "tokenizer")) if not saved.get(key)]
    assert not missing, (
        "Aus dem Ordner `modell` ließ sich " + " und ".join(missing) + " nicht mit `from_pretrained` laden"
        + (f" ({saved['error']})" if saved.get("error") else "")
        + ". Speichern Sie beide mit `save_pretrained` bzw. `trainer.save_model`, nicht mit pickle oder torch.save."
    )
    assert saved.get("num_labels") == 20, (
        f"Das gespeicherte Modell hat {saved.get('num_labels')} Ausgaben statt 20 (eine je Kategorie): laden Sie es "
        "mit `num_labels=20`."
    )


@pytest.mark.criterion("heldout_accuracy")
def test_heldout_accuracy(nb, hidden_labels, settings):
    """Das gespeicherte Modell klassifiziert unbekannte Beiträge deutlich besser als der Zufall"""
    facts = _facts(nb)
    assert _loaded(facts), NOT_SAVED
    accuracy = _hidden_accuracy(facts, hidden_labels)
    if accuracy is None:
        error = (facts.get("hidden_predictions") or {}).get("error")
        pytest.fail("Ihr gespeichertes Modell konnte die zurückgehaltenen Beiträge nicht klassifizieren"
                    + (f" ({error})" if error else "") + ".", pytrace=False)
    minimum = float(settings["finetune_min_accuracy"])
    assert accuracy >= minimum, (
        f"Ihr gespeichertes Modell ordnet nur {accuracy:.0%} von {len(hidden_labels[0])} Beiträgen, die es noch nie "
        f"gesehen hat, der richtigen Kategorie zu (nötig sind {minimum:.0%}, Zufall wären 5 %). Prüfen Sie, ob das "
        "Modell wirklich trainiert wurde (num_train_epochs=EPOCHS, learning_rate=LEARNING_RATE), ob Texte und "
        "Labels zusammenpassen und ob Sie das trainierte Modell gespeichert haben."
    )


@pytest.mark.criterion("accuracy_reported")
@pytest.mark.hidden  # rests on the facts command, which classifies held-out posts (probe-data/)
def test_printed_accuracy_matches(nb, settings):
    """Die ausgegebene Genauigkeit ist die des Modells auf den Testdaten"""
    printed = (nb.probe.get("printed_accuracy") or {})
    value = printed.get("value")
    assert printed.get("defined"), (
        "Die Variable `accuracy` fehlt. Speichern Sie die Genauigkeit auf den Testdaten als Zahl zwischen 0 und 1 "
        "in `accuracy` und geben Sie sie aus."
    )
    assert value is not None, (
        f"`accuracy` ist keine Zahl (sondern {printed.get('type')}). Speichern Sie die Genauigkeit als Zahl "
        "zwischen 0 und 1, z. B. `accuracy = metrics[\"eval_accuracy\"]`."
    )
    if 1 < value <= 100:
        value /= 100  # given in percent
    facts = _facts(nb)
    assert _loaded(facts), NOT_SAVED
    measured = facts["test_split"]
    if measured.get("accuracy") is None:
        pytest.fail("Ihr gespeichertes Modell konnte die Testdaten nicht klassifizieren"
                    + (f" ({measured['model_error']})" if measured.get("model_error") else "") + ".", pytrace=False)
    reference, tolerance = float(measured["accuracy"]), float(settings["finetune_accuracy_tolerance"])
    assert abs(value - reference) <= tolerance, (
        f"Sie geben eine Genauigkeit von {value:.3f} an, Ihr gespeichertes Modell erreicht auf den Testdaten "
        f"(`test_texts`, {measured['n']} Beiträge) aber {reference:.3f}. Berechnen Sie die Genauigkeit mit dem "
        "trainierten Modell auf `test_dataset`, nicht auf den Trainingsdaten (dort ist sie zu optimistisch), und "
        "speichern Sie genau dieses Modell."
    )


@pytest.mark.criterion("trained_on_train_split")
@pytest.mark.hidden  # reads the probe, which runs on held-out posts (probe-data/)
def test_trained_on_training_split(nb, settings):
    """Das Modell wurde auf den Trainingsdaten trainiert, nicht auf den Testdaten"""
    training = nb.probe.get("training_data")
    if not training or "error" in training or not training.get("items"):
        return  # no training dataset to inspect (other names than the task's): nothing can be objected
    share = training["test_only"] / training["items"]
    assert share <= float(settings["finetune_max_test_share"]), (
        f"{share:.0%} der Beiträge, auf denen Ihr Modell trainiert wurde, stammen aus dem Test-Split. Trainieren Sie "
        "auf `train_dataset` und werten Sie auf `test_dataset` aus: eine Genauigkeit auf Daten, die das Modell im "
        "Training gesehen hat, sagt nichts darüber, wie gut es unbekannte Texte klassifiziert."
    )


@pytest.mark.criterion("training")
def test_model_is_trained(nb):
    """Das Modell wird mit dem Trainer oder einer Trainingsschleife trainiert"""
    code = nb.code()
    with_trainer = re.search(r"\bTrainer\s*\(", code) and re.search(r"\.train\s*\(", code)
    with_loop = re.search(r"\.backward\s*\(", code) and re.search(r"\.step\s*\(", code)
    assert with_trainer or with_loop, (
        "Im Notebook wird kein Modell trainiert: erzeugen Sie einen `Trainer` und rufen Sie `trainer.train()` auf "
        "(oder schreiben Sie eine Trainingsschleife mit `loss.backward()` und `optimizer.step()`)."
    )


@pytest.mark.criterion("no_errors")
def test_no_errors(nb):
    """Alle Zellen laufen ohne Fehler"""
    assert not nb.errors(), nb.errors_message()
